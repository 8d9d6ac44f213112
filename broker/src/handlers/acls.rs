//! AlterAcl and ListAcls: the ACLs in the metadata group (see [`crate::authz`]).

use steme_protocol::acl::Acl;
use steme_protocol::messages::acls::{
    AclEntry, AlterAclRequest, AlterAclResponse, ListAclsResponse,
};
use steme_protocol::{ApiError, ErrorCode};

use crate::metadata::Command;
use crate::node::Broker;

/// Adds or removes one ACL, answering once the metadata group has committed it.
pub async fn alter(broker: &Broker, r: AlterAclRequest) -> Result<AlterAclResponse, ApiError> {
    let acl = Acl::parse(&r.acl.principal, &r.acl.resource, &r.acl.operation)
        .map_err(|e| ApiError::other(ErrorCode::InvalidRequest, e))?;
    let cmd = if r.add {
        Command::AddAcl { acl }
    } else {
        Command::RemoveAcl { acl }
    };
    broker.propose_metadata(cmd).await?;
    Ok(AlterAclResponse {})
}

/// Every ACL, as this broker's copy of the metadata holds them.
pub fn list(broker: &Broker) -> ListAclsResponse {
    ListAclsResponse {
        acls: broker
            .metadata()
            .acls
            .iter()
            .map(|a| AclEntry::from(&a))
            .collect(),
    }
}
