//! AlterAcl and ListAcls: the cluster's access control entries (see [`crate::acl`]),
//! stored in the metadata group. Both need `admin` on `cluster` (ListAcls: `describe`)
//! when the broker enforces authorization; send AlterAcl to the metadata leader.
//!
//! An ACL on the wire is its three text forms, each checked by the broker:
//!
//! ```text
//! +------------------+-----------------+------------------+
//! | principal string | resource string | operation string |
//! +------------------+-----------------+------------------+
//! ```
//!
//! AlterAcl request, response empty (after the error code). Adding an ACL that exists is
//! a no-op; removing one that does not is `InvalidRequest`.
//!
//! ```text
//! +---------------------------+-----+
//! | op u8 (1 add, 0 remove)   | acl |
//! +---------------------------+-----+
//! ```
//!
//! ListAcls request: empty. Response: `[acl]`, sorted by principal, resource, operation.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_string};

/// An ACL as text (see [`crate::acl::Acl::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// The principal (see [`crate::acl`] for the text forms).
    pub principal: String,
    /// The resource, as text (`topic:NAME`, `group:PREFIX*`, `cluster`…).
    pub resource: String,
    /// The operation, as text (`produce`, `consume`…).
    pub operation: String,
}

impl AclEntry {
    /// The fewest bytes one entry takes: three empty strings.
    const MIN_SIZE: usize = 3 * 2;

    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.principal);
        put_string(buf, &self.resource);
        put_string(buf, &self.operation);
    }

    fn decode(r: &mut Reader) -> Result<AclEntry, DecodeError> {
        Ok(AclEntry {
            principal: r.string()?,
            resource: r.string()?,
            operation: r.string()?,
        })
    }
}

impl From<&crate::acl::Acl> for AclEntry {
    fn from(a: &crate::acl::Acl) -> AclEntry {
        AclEntry {
            principal: a.principal.clone(),
            resource: a.resource.to_string(),
            operation: a.operation.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Adds or removes one ACL (through the metadata group).
pub struct AlterAclRequest {
    /// Add the ACL (true) or remove it (false).
    pub add: bool,
    /// The ACL.
    pub acl: AclEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The ACL change is committed.
pub struct AlterAclResponse {}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks for every ACL.
pub struct ListAclsRequest {}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Every ACL.
pub struct ListAclsResponse {
    /// The ACLs.
    pub acls: Vec<AclEntry>,
}

impl Body for AlterAclRequest {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(u8::from(self.add));
        self.acl.encode(buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AlterAclRequest {
            add: r.bool()?,
            acl: AclEntry::decode(r)?,
        })
    }
}

impl Body for AlterAclResponse {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AlterAclResponse {})
    }
}

impl Body for ListAclsRequest {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListAclsRequest {})
    }
}

impl Body for ListAclsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.acls.len());
        for a in &self.acls {
            a.encode(buf);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListAclsResponse {
            acls: r.vec_of("acls", AclEntry::MIN_SIZE, AclEntry::decode)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    fn entry() -> AclEntry {
        AclEntry {
            principal: "cert:alice".into(),
            resource: "topic:facts*".into(),
            operation: "produce".into(),
        }
    }

    #[test]
    fn roundtrip_alter() {
        roundtrip(&AlterAclRequest {
            add: true,
            acl: entry(),
        });
        roundtrip(&AlterAclRequest {
            add: false,
            acl: entry(),
        });
        roundtrip(&AlterAclResponse {});
    }

    #[test]
    fn roundtrip_list() {
        roundtrip(&ListAclsRequest {});
        roundtrip(&ListAclsResponse {
            acls: vec![entry(), entry()],
        });
    }
}
