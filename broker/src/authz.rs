//! Authorization (D11): which principal may do what, by the ACLs the metadata group
//! replicates.
//!
//! With `--authorization on`, a request is denied unless an ACL allows its principal (or
//! `*`) the operation on the resource, or the principal is a `--superuser`. Every request
//! is checked against the metadata as it is when the request arrives, so an ACL added or
//! removed takes effect on live connections with their next request.
//!
//! Internal topics (`__groups`) are the brokers' own, whatever the mode: no client, not
//! even a superuser, may produce to, consume from, create, delete or alter one. Any client
//! may describe one (group clients look up `__groups` partitions to find coordinators).
//! Skipping a damaged range is a cluster operation (`admin` on `cluster`) and may name an
//! internal topic: a quarantined range of `__groups` must be skippable.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use steme_protocol::acl::{self, ANONYMOUS, Acl, Operation, Resource, Target};
use steme_protocol::{ApiError, ErrorCode};

use crate::config::{Authorization, Config};
use crate::metadata::{INTERNAL_PREFIX, is_internal};

/// The most ACLs a cluster holds (they live in the metadata, which every broker keeps whole).
pub const MAX_ACLS: usize = 10_000;

/// Every ACL, by principal, so that a check reads only its principal's entries and `*`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AclTable(BTreeMap<String, BTreeSet<(Resource, Operation)>>);

impl AclTable {
    pub fn add(&mut self, acl: Acl) -> Result<(), String> {
        acl::check_principal(&acl.principal)?;
        let exists = self
            .0
            .get(&acl.principal)
            .is_some_and(|g| g.contains(&(acl.resource.clone(), acl.operation)));
        if !exists && self.len() >= MAX_ACLS {
            return Err(format!(
                "the cluster holds {MAX_ACLS} ACLs, the most it may; remove some first"
            ));
        }
        self.0
            .entry(acl.principal)
            .or_default()
            .insert((acl.resource, acl.operation));
        Ok(())
    }

    pub fn remove(&mut self, acl: &Acl) -> Result<(), String> {
        let Some(grants) = self.0.get_mut(&acl.principal) else {
            return Err(format!("no such ACL: {acl}"));
        };
        if !grants.remove(&(acl.resource.clone(), acl.operation)) {
            return Err(format!("no such ACL: {acl}"));
        }
        if grants.is_empty() {
            self.0.remove(&acl.principal);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every ACL, sorted by principal, resource, operation.
    pub fn iter(&self) -> impl Iterator<Item = Acl> + '_ {
        self.0.iter().flat_map(|(principal, grants)| {
            grants.iter().map(|(resource, operation)| Acl {
                principal: principal.clone(),
                resource: resource.clone(),
                operation: *operation,
            })
        })
    }

    /// Whether an ACL allows `principal` to do `op` to `target`.
    pub fn allows(&self, principal: &str, op: Operation, target: Target<'_>) -> bool {
        [principal, "*"].into_iter().any(|p| {
            self.0.get(p).is_some_and(|grants| {
                grants
                    .iter()
                    .any(|(resource, granted)| granted.covers(op) && target.within(resource))
            })
        })
    }
}

/// One request's view of the rules: the broker's settings, the ACLs as of now, and who
/// asks.
pub struct Gate<'a> {
    pub config: &'a Config,
    pub acls: &'a AclTable,
    pub principal: Option<&'a str>,
}

impl Gate<'_> {
    /// Ok if the principal may do `op` to `target`; else the denial, naming all three.
    pub fn allow(&self, op: Operation, target: Target<'_>) -> Result<(), ApiError> {
        if let Target::Topic(topic) = target
            && is_internal(topic)
        {
            if op == Operation::Describe {
                return Ok(());
            }
            return Err(ApiError::other(
                ErrorCode::InvalidRequest,
                format!(
                    "cannot {op}{} `{topic}`: names starting with `{INTERNAL_PREFIX}` are \
                     internal topics, written and read by brokers only",
                    op.preposition()
                ),
            ));
        }
        if self.may(op, target) {
            return Ok(());
        }
        Err(ApiError::other(
            ErrorCode::AuthorizationDenied,
            acl::denial(self.who(), op, target),
        ))
    }

    /// Whether the principal may do `op` to `target` (for filtering listings).
    pub fn may(&self, op: Operation, target: Target<'_>) -> bool {
        if self.config.authorization == Authorization::Off {
            return true;
        }
        if let Target::Topic(topic) = target
            && is_internal(topic)
        {
            // Describing is all a client may do to one, and any client may (group clients
            // find their coordinator through `__groups` metadata).
            return op == Operation::Describe;
        }
        let who = self.who();
        self.config.superusers.iter().any(|s| s == who) || self.acls.allows(who, op, target)
    }

    fn who(&self) -> &str {
        self.principal.unwrap_or(ANONYMOUS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(p: &str, r: &str, o: &str) -> Acl {
        Acl::parse(p, r, o).unwrap()
    }

    fn config_on(superusers: &[&str]) -> Config {
        Config {
            authorization: Authorization::On,
            superusers: superusers.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn denies_by_default_and_allows_what_an_acl_says() {
        let mut acls = AclTable::default();
        let config = config_on(&["cert:ops"]);
        let gate = |p| Gate {
            config: &config,
            acls: &acls,
            principal: p,
        };
        let t = Target::Topic("facts");
        assert!(!gate(Some("cert:alice")).may(Operation::Produce, t));
        let err = gate(None).allow(Operation::Produce, t).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AuthorizationDenied);
        assert!(
            err.to_string()
                .contains("anonymous may not produce to topic:facts")
        );
        assert!(
            gate(Some("cert:ops")).may(Operation::Delete, t),
            "superuser"
        );
        acls.add(acl("cert:alice", "topic:fa*", "produce")).unwrap();
        let gate = |p| Gate {
            config: &config,
            acls: &acls,
            principal: p,
        };
        assert!(gate(Some("cert:alice")).may(Operation::Produce, t));
        assert!(gate(Some("cert:alice")).may(Operation::Describe, t));
        assert!(!gate(Some("cert:alice")).may(Operation::Consume, t));
        assert!(!gate(Some("cert:bob")).may(Operation::Produce, t));
    }

    #[test]
    fn internal_topics_are_closed_to_superusers_too() {
        let acls = AclTable::default();
        let config = config_on(&["cert:ops"]);
        let gate = Gate {
            config: &config,
            acls: &acls,
            principal: Some("cert:ops"),
        };
        for op in [Operation::Produce, Operation::Consume, Operation::Delete] {
            let err = gate.allow(op, Target::Topic("__groups")).unwrap_err();
            assert!(err.to_string().contains("internal topics"), "{err}");
        }
        gate.allow(Operation::Describe, Target::Topic("__groups"))
            .unwrap();
        let bob = Gate {
            principal: Some("cert:bob"),
            ..gate
        };
        assert!(bob.may(Operation::Describe, Target::Topic("__groups")));
        assert!(!gate.may(Operation::Consume, Target::Topic("__groups")));
    }

    #[test]
    fn removing_a_missing_acl_is_refused_and_adding_twice_is_one() {
        let mut acls = AclTable::default();
        let a = acl("*", "group:g", "consume");
        acls.add(a.clone()).unwrap();
        acls.add(a.clone()).unwrap();
        assert_eq!(acls.len(), 1);
        acls.remove(&a).unwrap();
        assert!(acls.is_empty());
        assert!(acls.remove(&a).unwrap_err().contains("no such ACL"));
    }

    #[test]
    fn the_table_roundtrips_as_json() {
        let mut acls = AclTable::default();
        acls.add(acl("cert:a", "topic:t", "produce")).unwrap();
        acls.add(acl("*", "cluster", "describe")).unwrap();
        let json = serde_json::to_string(&acls).unwrap();
        assert_eq!(serde_json::from_str::<AclTable>(&json).unwrap(), acls);
        assert_eq!(acls.iter().count(), 2);
    }
}
