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
            if a.json {
                crate::output::json_line(&acl_json(
                    &acl.principal,
                    &acl.resource,
                    &acl.operation,
                    "added",
                ))?;
            } else {
                println!("added: {acl}");
            }
        }
        AclCommand::Remove(a) => {
            let acl = parse(&a)?;
            admin
                .remove_acl(&acl)
                .await
                .with_context(|| format!("cannot remove the ACL `{acl}`"))?;
            if a.json {
                crate::output::json_line(&acl_json(
                    &acl.principal,
                    &acl.resource,
                    &acl.operation,
                    "removed",
                ))?;
            } else {
                println!("removed: {acl}");
            }
        }
        AclCommand::List { json } => {
            let acls = admin.list_acls().await.context("cannot list the ACLs")?;
            if json {
                for a in &acls {
                    println!("{}", acl_json(&a.principal, &a.resource, &a.operation, ""));
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

/// An ACL as one JSON object; `done` (`added`, `removed`) becomes a `true` key after the
/// ACL's three parts when not empty.
fn acl_json(
    principal: &str,
    resource: &impl ToString,
    operation: &impl ToString,
    done: &str,
) -> serde_json::Value {
    let mut line = json!({
        "principal": principal,
        "resource": resource.to_string(),
        "operation": operation.to_string(),
    });
    if !done.is_empty() {
        line[done] = serde_json::Value::Bool(true);
    }
    line
}

/// Checks the three parts here, so that a typo is named before anything is sent.
fn parse(a: &AclArgs) -> anyhow::Result<Acl> {
    Acl::parse(&a.principal, &a.resource, &a.operation).map_err(anyhow::Error::msg)
}
