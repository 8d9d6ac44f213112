//! The authorization table: which operation on which resource each request needs (see
//! [`crate::authz`] for the rules). One match, so that every API's requirement can be read
//! in one place; a request not listed here is not served.
//!
//! | request | needs |
//! |---|---|
//! | ApiVersions, AuthChallenge, Authenticate | nothing |
//! | Metadata | `describe` on each topic named (unnamed: the answer lists only those) |
//! | CreateTopic | `create` on the topic, and `alter` to set `verify.signatures=false` |
//! | DeleteTopic | `delete` on the topic |
//! | AlterTopicConfig, AddPartitions | `alter` on the topic |
//! | DescribeTopic, ListOffsets | `describe` on the topic |
//! | Produce | `produce` on the topic |
//! | Fetch | `consume` on the topic |
//! | Heartbeat | `consume` on the group, `describe` on each subscribed topic |
//! | CommitOffsets | `consume` on the group and on each topic committed |
//! | FetchOffsets | `describe` on the group and on each topic named (unnamed: the answer holds only topics the principal may describe) |
//! | LeaveGroup | `consume` on the group |
//! | DescribeGroup | `describe` on the group (offsets and lag only of topics the principal may describe) |
//! | ListGroups | nothing (the answer lists only groups the principal may describe) |
//! | DeleteGroup | `delete` on the group |
//! | SkipDamage, AlterAcl, ReassignPartition, DecommissionBroker | `admin` on `cluster` |
//! | ListAcls | `describe` on `cluster` |

use steme_protocol::acl::{Operation, Target};
use steme_protocol::messages::Request;
use steme_protocol::{ApiError, ErrorCode};

use crate::authz::Gate;
use crate::topic_config::{VERIFY_SIGNATURES, parse_bool};

/// Ok if `gate`'s principal may make `req`; else the first denial.
pub fn check(gate: &Gate<'_>, req: &Request) -> Result<(), ApiError> {
    use Operation::*;
    use Target::{Cluster, Group, Topic};
    match req {
        Request::ApiVersions(_)
        | Request::AuthChallenge(_)
        | Request::Authenticate(_)
        | Request::ListGroups(_)
        | Request::Raft(_) => Ok(()),
        Request::Metadata(r) => r
            .topics
            .iter()
            .flatten()
            .try_for_each(|t| gate.allow(Describe, Topic(t))),
        Request::CreateTopic(r) => {
            gate.allow(Create, Topic(&r.name))?;
            let unverified = r
                .configs
                .iter()
                .any(|c| c.key == VERIFY_SIGNATURES && parse_bool(&c.value) == Some(false));
            if unverified {
                gate.allow(Alter, Topic(&r.name))?;
            }
            Ok(())
        }
        Request::DeleteTopic(r) => gate.allow(Delete, Topic(&r.name)),
        Request::AlterTopicConfig(r) => gate.allow(Alter, Topic(&r.topic)),
        Request::AddPartitions(r) => gate.allow(Alter, Topic(&r.topic)),
        Request::DescribeTopic(r) => gate.allow(Describe, Topic(&r.name)),
        Request::ListOffsets(r) => gate.allow(Describe, Topic(&r.topic)),
        Request::Produce(r) => gate.allow(Produce, Topic(&r.topic)),
        Request::Fetch(r) => gate.allow(Consume, Topic(&r.topic)),
        Request::Heartbeat(r) => {
            gate.allow(Consume, Group(&r.group))?;
            r.subscription
                .iter()
                .try_for_each(|t| gate.allow(Describe, Topic(t)))
        }
        Request::CommitOffsets(r) => {
            gate.allow(Consume, Group(&r.group))?;
            r.offsets
                .iter()
                .try_for_each(|o| gate.allow(Consume, Topic(&o.topic)))
        }
        Request::FetchOffsets(r) => {
            gate.allow(Describe, Group(&r.group))?;
            r.partitions
                .iter()
                .flatten()
                .try_for_each(|tp| gate.allow(Describe, Topic(&tp.topic)))
        }
        Request::LeaveGroup(r) => gate.allow(Consume, Group(&r.group)),
        Request::DescribeGroup(r) => gate.allow(Describe, Group(&r.group)),
        Request::DeleteGroup(r) => gate.allow(Delete, Group(&r.group)),
        Request::SkipDamage(_)
        | Request::AlterAcl(_)
        | Request::ReassignPartition(_)
        | Request::DecommissionBroker(_) => gate.allow(Admin, Cluster),
        Request::ListAcls(_) => gate.allow(Describe, Cluster),
        // Fail closed: an API added without a line above is not served to anyone.
        other => Err(ApiError::other(
            ErrorCode::InvalidRequest,
            format!(
                "{:?} has no authorization rule; not served",
                other.api_key()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use steme_protocol::acl::Acl;
    use steme_protocol::messages::alter_topic_config::AlterTopicConfigRequest;

    use super::*;
    use crate::authz::AclTable;
    use crate::config::{Authorization, Config};

    fn alter(topic: &str) -> Request {
        AlterTopicConfigRequest {
            topic: topic.into(),
            set: vec![],
            delete: vec!["retention.ms".into()],
        }
        .into()
    }

    fn gate<'a>(config: &'a Config, acls: &'a AclTable, principal: &'a str) -> Gate<'a> {
        Gate {
            config,
            acls,
            principal: Some(principal),
        }
    }

    #[test]
    fn altering_a_topic_config_needs_alter_on_the_topic() -> Result<(), String> {
        let config = Config {
            authorization: Authorization::On,
            superusers: vec!["cert:root".into()],
            ..Config::default()
        };
        let mut acls = AclTable::default();
        acls.add(Acl::parse("cert:ops", "topic:facts", "create")?)?;
        let denied = check(&gate(&config, &acls, "cert:ops"), &alter("facts")).unwrap_err();
        assert_eq!(denied.code(), ErrorCode::AuthorizationDenied, "{denied}");
        acls.add(Acl::parse("cert:ops", "topic:facts", "alter")?)?;
        check(&gate(&config, &acls, "cert:ops"), &alter("facts")).map_err(|e| e.to_string())?;
        assert!(check(&gate(&config, &acls, "cert:ops"), &alter("other")).is_err());
        // Internal topics: not even a superuser.
        let internal = check(&gate(&config, &acls, "cert:root"), &alter("__groups")).unwrap_err();
        assert!(
            internal.to_string().contains("internal topics"),
            "{internal}"
        );
        Ok(())
    }

    #[test]
    fn moving_replicas_and_retiring_brokers_need_admin_on_the_cluster() -> Result<(), String> {
        use steme_protocol::messages::reassign::{
            DecommissionBrokerRequest, ReassignPartitionRequest,
        };
        let config = Config {
            authorization: Authorization::On,
            ..Config::default()
        };
        let mut acls = AclTable::default();
        // Everything on the topic is not enough to move its replicas.
        for op in ["alter", "create", "delete", "describe"] {
            acls.add(Acl::parse("cert:ops", "topic:facts", op)?)?;
        }
        let requests: [Request; 2] = [
            ReassignPartitionRequest {
                topic: "facts".into(),
                partition: 0,
                replicas: vec![1, 2, 3],
            }
            .into(),
            DecommissionBrokerRequest { node_id: 3 }.into(),
        ];
        for req in &requests {
            let denied = check(&gate(&config, &acls, "cert:ops"), req).unwrap_err();
            assert_eq!(denied.code(), ErrorCode::AuthorizationDenied, "{denied}");
        }
        acls.add(Acl::parse("cert:ops", "cluster", "admin")?)?;
        for req in &requests {
            check(&gate(&config, &acls, "cert:ops"), req).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
