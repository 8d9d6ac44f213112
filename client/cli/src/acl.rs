//! `steme acl add|remove|list`.

use anyhow::Context;
use serde_json::json;
use steme_client::Admin;
use steme_protocol::acl::Acl;

use crate::args::{AclArgs, AclCommand};

pub async fn run(bootstrap: &str, cmd: AclCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    match cmd {
        AclCommand::Add(a) => {
            let acl = parse(&a)?;
            admin
                .add_acl(&acl)
                .await
                .with_context(|| format!("cannot add the ACL `{acl}`"))?;
            println!("added: {acl}");
        }
        AclCommand::Remove(a) => {
            let acl = parse(&a)?;
            admin
                .remove_acl(&acl)
                .await
                .with_context(|| format!("cannot remove the ACL `{acl}`"))?;
            println!("removed: {acl}");
        }
        AclCommand::List { json } => {
            let acls = admin.list_acls().await.context("cannot list the ACLs")?;
            if json {
                for a in &acls {
                    let line = json!({
                        "principal": a.principal,
                        "resource": a.resource,
                        "operation": a.operation,
                    });
                    println!("{line}");
                }
            } else {
                println!("{:<72} {:<32} OPERATION", "PRINCIPAL", "RESOURCE");
                for a in &acls {
                    println!("{:<72} {:<32} {}", a.principal, a.resource, a.operation);
                }
            }
        }
    }
    Ok(())
}

/// Checks the three parts here, so that a typo is named before anything is sent.
fn parse(a: &AclArgs) -> anyhow::Result<Acl> {
    Acl::parse(&a.principal, &a.resource, &a.operation).map_err(anyhow::Error::msg)
}
