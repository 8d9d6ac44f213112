//! Access control entries (D11): who may do what to which resource.
//!
//! An ACL allows one principal one operation on one resource. Nothing else exists: with
//! authorization on, a broker denies everything no ACL allows (superusers aside). The text
//! forms below are the contract `steme acl` and the wire share:
//!
//! - principals: `key:<64 hex digits>`, `cert:<CN>`, `anonymous` (a connection that did
//!   not authenticate) and `*` (anyone, anonymous included);
//! - resources: `topic:NAME`, `topic:PREFIX*`, `group:NAME`, `group:PREFIX*`, `cluster`
//!   (`topic:*` is every topic);
//! - operations: `produce`, `consume`, `describe`, `create`, `delete`, `alter`, `admin`.
//!
//! `produce`, `consume`, `delete`, `alter` and `admin` each imply `describe` of the same
//! resource, as Kafka's write, read, delete and alter do: a producer may look up the
//! partitions it writes to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest principal an ACL may name.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// The principal of a connection that did not authenticate.
pub const ANONYMOUS: &str = "anonymous";

/// What an ACL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Produce to a topic.
    Produce,
    /// Fetch from a topic; join, commit and leave as a member of a group.
    Consume,
    /// Read descriptions and offsets of topics and groups, and the cluster's ACLs.
    Describe,
    /// Create topics.
    Create,
    /// Delete topics and groups.
    Delete,
    /// Change a resource's settings.
    Alter,
    /// Change ACLs and skip damaged ranges (on the cluster).
    Admin,
}

impl Operation {
    /// Every operation, in wire order.
    pub const ALL: [Operation; 7] = [
        Operation::Produce,
        Operation::Consume,
        Operation::Describe,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Admin,
    ];

    /// The lowercase name (`produce`, `consume`, …), as in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Produce => "produce",
            Operation::Consume => "consume",
            Operation::Describe => "describe",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Admin => "admin",
        }
    }

    /// Whether an ACL for `self` also allows `wanted`.
    pub fn covers(self, wanted: Operation) -> bool {
        self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Produce
                        | Operation::Consume
                        | Operation::Delete
                        | Operation::Alter
                        | Operation::Admin
                ))
    }

    /// The word after the operation in a sentence: "may not produce to topic:t".
    pub fn preposition(self) -> &'static str {
        match self {
            Operation::Produce => " to",
            Operation::Consume => " from",
            _ => "",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> Result<Operation, String> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "operation `{s}`: expected one of produce, consume, describe, create, \
                     delete, alter, admin"
                )
            })
    }
}

/// A topic or group name, or every name starting with a prefix (`PREFIX*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    /// The name, or the prefix when `prefix` is set.
    pub name: String,
    /// Whether `name` is a prefix (written `PREFIX*`).
    pub prefix: bool,
}

impl Pattern {
    /// Whether `name` is covered by this pattern.
    pub fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name
        }
    }
}

/// What an ACL is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Resource {
    /// Topics matching the pattern.
    Topic(Pattern),
    /// Groups matching the pattern.
    Group(Pattern),
    /// The cluster as a whole.
    Cluster,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, p) = match self {
            Resource::Topic(p) => ("topic", p),
            Resource::Group(p) => ("group", p),
            Resource::Cluster => return f.write_str("cluster"),
        };
        write!(f, "{kind}:{}{}", p.name, if p.prefix { "*" } else { "" })
    }
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Resource, String> {
        if s == "cluster" {
            return Ok(Resource::Cluster);
        }
        let bad = |why: &str| format!("resource `{s}`: {why}");
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            bad("expected topic:NAME, topic:PREFIX*, group:NAME, group:PREFIX* or cluster")
        })?;
        let (name, prefix) = match name.strip_suffix('*') {
            Some(p) => (p, true),
            None => (name, false),
        };
        if !prefix && name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if name.len() > 249 {
            return Err(bad("the name is longer than 249 bytes"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(allowed) {
            return Err(bad(
                "a name is made of [A-Za-z0-9._-] (a prefix ends with one `*`)",
            ));
        }
        let pattern = Pattern {
            name: name.to_owned(),
            prefix,
        };
        match kind {
            "topic" => Ok(Resource::Topic(pattern)),
            "group" => Ok(Resource::Group(pattern)),
            _ => Err(bad("the kind is topic, group or cluster")),
        }
    }
}

impl TryFrom<String> for Resource {
    type Error = String;

    fn try_from(s: String) -> Result<Resource, String> {
        s.parse()
    }
}

impl From<Resource> for String {
    fn from(r: Resource) -> String {
        r.to_string()
    }
}

/// A resource a request touches, to be matched against ACLs' resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A topic, by name.
    Topic(&'a str),
    /// A group, by name.
    Group(&'a str),
    /// The cluster as a whole.
    Cluster,
}

impl Target<'_> {
    /// Whether an ACL on `resource` is about this target.
    pub fn within(&self, resource: &Resource) -> bool {
        match (self, resource) {
            (Target::Topic(name), Resource::Topic(p))
            | (Target::Group(name), Resource::Group(p)) => p.matches(name),
            (Target::Cluster, Resource::Cluster) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Topic(n) => write!(f, "topic:{n}"),
            Target::Group(n) => write!(f, "group:{n}"),
            Target::Cluster => f.write_str("cluster"),
        }
    }
}

/// Checks a principal's text form.
pub fn check_principal(p: &str) -> Result<(), String> {
    if p == "*" || p == ANONYMOUS {
        return Ok(());
    }
    if p.len() > MAX_PRINCIPAL_LEN {
        return Err(format!(
            "principal `{}…` is longer than {MAX_PRINCIPAL_LEN} bytes",
            &p[..p.floor_char_boundary(32)]
        ));
    }
    if let Some(key) = p.strip_prefix("key:") {
        if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Ok(());
        }
        return Err(format!(
            "principal `{p}`: a key principal is `key:` and 64 lowercase hex digits \
             (as `steme keygen` prints)"
        ));
    }
    if let Some(cn) = p.strip_prefix("cert:") {
        if !cn.is_empty() && !cn.chars().any(char::is_control) {
            return Ok(());
        }
        return Err(format!(
            "principal `{p}`: a certificate principal is `cert:<CN>`"
        ));
    }
    Err(format!(
        "principal `{p}`: expected key:<hex>, cert:<CN>, {ANONYMOUS} or *"
    ))
}

/// One ACL: `principal` may do `operation` to `resource`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    /// Who: a principal (`key:<64 hex digits>`, `cert:<CN>`, `anonymous`), or `*` for anyone.
    pub principal: String,
    /// What it is about.
    pub resource: Resource,
    /// What it allows.
    pub operation: Operation,
}

impl Acl {
    /// An ACL from its three text forms, each checked.
    pub fn parse(principal: &str, resource: &str, operation: &str) -> Result<Acl, String> {
        check_principal(principal)?;
        Ok(Acl {
            principal: principal.to_owned(),
            resource: resource.parse()?,
            operation: operation.parse()?,
        })
    }

    /// Whether this ACL allows `principal` to do `wanted` to `target`.
    pub fn allows(&self, principal: &str, wanted: Operation, target: Target<'_>) -> bool {
        (self.principal == "*" || self.principal == principal)
            && self.operation.covers(wanted)
            && target.within(&self.resource)
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may {}{} {}",
            self.principal,
            self.operation,
            self.operation.preposition(),
            self.resource
        )
    }
}

/// The message of a denial: `authorization denied: key:ab12… may not produce to topic:t`.
pub fn denial(principal: &str, op: Operation, target: Target<'_>) -> String {
    format!(
        "authorization denied: {principal} may not {op}{} {target}",
        op.preposition()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_and_print_back() {
        for s in [
            "topic:facts",
            "topic:facts.*",
            "topic:*",
            "group:indexers",
            "group:idx-*",
            "cluster",
        ] {
            let r: Resource = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        for bad in [
            "topic:",
            "topic",
            "topics:a",
            "topic:a b",
            "topic:a**",
            "topic:*a",
            "group:ä",
            "",
        ] {
            assert!(bad.parse::<Resource>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn patterns_match_exact_names_or_prefixes() {
        let exact: Resource = "topic:facts".parse().unwrap();
        let prefix: Resource = "topic:facts*".parse().unwrap();
        assert!(Target::Topic("facts").within(&exact));
        assert!(!Target::Topic("facts2").within(&exact));
        assert!(Target::Topic("facts2").within(&prefix));
        assert!(!Target::Topic("fact").within(&prefix));
        assert!(!Target::Group("facts").within(&prefix), "kinds never mix");
        assert!(Target::Cluster.within(&Resource::Cluster));
    }

    #[test]
    fn writes_reads_and_admin_imply_describe_only() {
        let acl = Acl::parse("*", "topic:t", "produce").unwrap();
        assert!(acl.allows("cert:x", Operation::Describe, Target::Topic("t")));
        assert!(acl.allows(ANONYMOUS, Operation::Produce, Target::Topic("t")));
        assert!(!acl.allows("cert:x", Operation::Consume, Target::Topic("t")));
        let create = Acl::parse("cert:x", "topic:t", "create").unwrap();
        assert!(!create.allows("cert:x", Operation::Describe, Target::Topic("t")));
        assert!(!create.allows("cert:y", Operation::Create, Target::Topic("t")));
    }

    #[test]
    fn principals_are_checked() {
        let key = format!("key:{}", "ab".repeat(32));
        for ok in [key.as_str(), "cert:alice", "*", "anonymous"] {
            check_principal(ok).unwrap();
        }
        let upper = format!("key:{}", "AB".repeat(32));
        let long = format!("cert:{}", "x".repeat(300));
        for bad in [
            "key:ab",
            upper.as_str(),
            "cert:",
            "alice",
            "",
            long.as_str(),
        ] {
            assert!(check_principal(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn denials_name_principal_operation_and_resource() {
        assert_eq!(
            denial("key:ab12", Operation::Produce, Target::Topic("t")),
            "authorization denied: key:ab12 may not produce to topic:t"
        );
        assert_eq!(
            denial(ANONYMOUS, Operation::Admin, Target::Cluster),
            "authorization denied: anonymous may not admin cluster"
        );
    }

    #[test]
    fn acls_roundtrip_as_json() {
        let acl = Acl::parse("cert:alice", "group:idx*", "consume").unwrap();
        let json = serde_json::to_string(&acl).unwrap();
        assert_eq!(
            json,
            r#"{"principal":"cert:alice","resource":"group:idx*","operation":"consume"}"#
        );
        assert_eq!(serde_json::from_str::<Acl>(&json).unwrap(), acl);
    }
}
