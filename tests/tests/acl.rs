//! Authorization against a real broker process run with `--authorization on`: an ACL
//! matrix. Every operation is tried first without an ACL (denied, the error naming the
//! principal, the operation and the resource), then with one (allowed); prefix resources
//! match only their prefix; a superuser needs no ACL but still cannot touch internal
//! topics; and ACLs added or removed with `steme acl` take effect on connections that are
//! already open.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::ClientError;
use steme_client::connection::{AuthKey, Connection, ConnectionConfig};
use steme_protocol::messages::acls::{AclEntry, AlterAclRequest, ListAclsRequest};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::commit_offsets::{CommitOffsetsRequest, OffsetCommit};
use steme_protocol::messages::create_topic::{ConfigEntry, CreateTopicRequest};
use steme_protocol::messages::delete_group::DeleteGroupRequest;
use steme_protocol::messages::delete_topic::DeleteTopicRequest;
use steme_protocol::messages::describe_group::DescribeGroupRequest;
use steme_protocol::messages::describe_topic::DescribeTopicRequest;
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::metadata::MetadataRequest;
use steme_protocol::messages::produce::{Acks, ProduceRequest};
use steme_protocol::messages::skip_damage::SkipDamageRequest;
use steme_protocol::{BatchBuilder, ErrorCode, SigningKey};
use steme_tests::cli::{CliOutput, steme};
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::workload::{assertions, key};
use steme_tests::{unique, within};

const T: Duration = Duration::from_secs(30);

fn principal(k: &SigningKey) -> String {
    key_principal(&k.verifying_key().to_bytes())
}

async fn connect(addr: &str, k: &SigningKey) -> anyhow::Result<Connection> {
    let config = ConnectionConfig {
        auth_key: Some(AuthKey(k.clone())),
        ..ConnectionConfig::default()
    };
    Ok(Connection::connect(addr, &config).await?)
}

/// Whether `r` is an authorization denial whose message contains `words`.
fn denied<T: std::fmt::Debug>(r: &Result<T, ClientError>, words: &str) -> anyhow::Result<()> {
    match r {
        Err(ClientError::Api(e))
            if e.code() == ErrorCode::AuthorizationDenied && e.to_string().contains(words) =>
        {
            Ok(())
        }
        other => anyhow::bail!("expected a denial naming `{words}`, got {other:?}"),
    }
}

fn create(name: &str, unverified: bool) -> CreateTopicRequest {
    let configs = if unverified {
        vec![ConfigEntry {
            key: "verify.signatures".into(),
            value: "false".into(),
        }]
    } else {
        Vec::new()
    };
    CreateTopicRequest {
        name: name.into(),
        partitions: 1,
        replication_factor: 0,
        configs,
    }
}

fn produce(topic: &str, run: &str) -> anyhow::Result<ProduceRequest> {
    let mut batch = BatchBuilder::with_capacity(4096);
    for a in assertions(run, 3, 100) {
        batch.push(&a.sign(&key(7))?);
    }
    Ok(ProduceRequest {
        topic: topic.into(),
        partition: 0,
        acks: Acks::All,
        timeout_ms: 10_000,
        causality: None,
        batch: batch.finish(),
    })
}

fn fetch(topic: &str) -> FetchRequest {
    FetchRequest {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
    }
}

fn commit(group: &str, topic: &str) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: group.into(),
        member_id: String::new(),
        member_epoch: 0,
        offsets: vec![OffsetCommit {
            topic: topic.into(),
            partition: 0,
            offset: 1,
            metadata: String::new(),
        }],
    }
}

/// `call`, again while it fails retriably (the groups topic being made on first use).
async fn settled<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match call().await {
            Err(ClientError::Api(e))
                if e.is_retriable() && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// `steme acl ARGS` as the superuser.
async fn acl(addr: &str, ops_key: &Path, args: &[&str]) -> anyhow::Result<CliOutput> {
    let mut all = vec!["--auth-key", ops_key.to_str().context("utf-8 path")?, "acl"];
    all.extend_from_slice(args);
    steme(addr, &all, "", T).await
}

async fn grant(
    addr: &str,
    ops_key: &Path,
    who: &str,
    resource: &str,
    op: &str,
) -> anyhow::Result<()> {
    acl(
        addr,
        ops_key,
        &[
            "add",
            "--principal",
            who,
            "--resource",
            resource,
            "--operation",
            op,
        ],
    )
    .await?
    .success()
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_matrix_denies_by_default_and_allows_exactly_what_is_granted() -> anyhow::Result<()> {
    let (ops, alice, bob) = (key(41), key(42), key(43));
    let (ops_p, alice_p, bob_p) = (principal(&ops), principal(&alice), principal(&bob));
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: vec![
            "--auth".into(),
            "required".into(),
            "--authorization".into(),
            "on".into(),
            "--superuser".into(),
            ops_p.clone(),
        ],
    })?;
    let addr = broker.bootstrap();
    let dir = tempfile::tempdir()?;
    let ops_file = dir.path().join("ops.key");
    let seed: String = ops.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&ops_file, seed)?;
    let ops_key = ops_file.as_path();
    within(Duration::from_secs(180), async {
        let run = unique("acl");
        let (t, raw) = (format!("{run}.a.t"), format!("{run}.a.raw"));
        let group = format!("{run}-g");
        let a = connect(&addr, &alice).await?;
        let b = connect(&addr, &bob).await?;

        // create: denied, the message whole; then allowed by a prefix, and only within it.
        let r = a.call(&create(&t, false), T).await;
        denied(
            &r,
            &format!("authorization denied: {alice_p} may not create topic:{t}"),
        )?;
        grant(
            &addr,
            ops_key,
            &alice_p,
            &format!("topic:{run}.a.*"),
            "create",
        )
        .await?;
        a.call(&create(&t, false), T).await?;
        let r = a.call(&create(&format!("{run}.b.t"), false), T).await;
        denied(&r, &format!("may not create topic:{run}.b.t"))?;

        // alter: only it may turn off verify.signatures.
        let r = a.call(&create(&raw, true), T).await;
        denied(&r, &format!("{alice_p} may not alter topic:{raw}"))?;
        grant(&addr, ops_key, &alice_p, &format!("topic:{raw}"), "alter").await?;
        a.call(&create(&raw, true), T).await?;

        // produce, on the connection opened before the ACL existed.
        let records = produce(&t, &run)?;
        let r = settled(|| a.call(&records, T)).await;
        denied(&r, &format!("{alice_p} may not produce to topic:{t}"))?;
        grant(&addr, ops_key, &alice_p, &format!("topic:{t}"), "produce").await?;
        settled(|| a.call(&records, T)).await?;

        // describe: implied by produce; bob has nothing, so sees nothing.
        a.call(&DescribeTopicRequest { name: t.clone() }, T).await?;
        let r = b.call(&DescribeTopicRequest { name: t.clone() }, T).await;
        denied(&r, &format!("{bob_p} may not describe topic:{t}"))?;
        let seen = b.call(&MetadataRequest { topics: None }, T).await?;
        ensure!(seen.topics.is_empty(), "bob listed {:?}", seen.topics);
        let r = b
            .call(
                &MetadataRequest {
                    topics: Some(vec![t.clone()]),
                },
                T,
            )
            .await;
        denied(&r, &format!("may not describe topic:{t}"))?;
        let seen = a.call(&MetadataRequest { topics: None }, T).await?;
        let names: Vec<_> = seen.topics.iter().map(|t| t.name.as_str()).collect();
        ensure!(names.contains(&t.as_str()), "alice listed {names:?}");

        // consume.
        let r = b.call(&fetch(&t), T).await;
        denied(&r, &format!("{bob_p} may not consume from topic:{t}"))?;
        grant(&addr, ops_key, &bob_p, &format!("topic:{t}"), "consume").await?;
        let got = b.call(&fetch(&t), T).await?;
        ensure!(
            got.high_watermark == 3 && !got.records.is_empty(),
            "{got:?}"
        );
        let r = a.call(&fetch(&t), T).await;
        denied(&r, &format!("{alice_p} may not consume from topic:{t}"))?;

        // group commits: consume on the group and on the topic.
        let r = b.call(&commit(&group, &t), T).await;
        denied(&r, &format!("{bob_p} may not consume from group:{group}"))?;
        grant(&addr, ops_key, &bob_p, &format!("group:{run}-*"), "consume").await?;
        let offsets = commit(&group, &t);
        let done = settled(|| b.call(&offsets, T)).await?;
        ensure!(done.results.iter().all(|p| p.is_ok()), "{done:?}");
        let r = b.call(&commit(&group, &raw), T).await;
        denied(&r, &format!("{bob_p} may not consume from topic:{raw}"))?;
        // Any client finds coordinators through `__groups` metadata, without an ACL.
        let groups = a
            .call(
                &MetadataRequest {
                    topics: Some(vec!["__groups".into()]),
                },
                T,
            )
            .await?;
        ensure!(groups.topics.len() == 1, "{groups:?}");
        b.call(
            &DescribeGroupRequest {
                group: group.clone(),
            },
            T,
        )
        .await?;
        let r = a
            .call(
                &DescribeGroupRequest {
                    group: group.clone(),
                },
                T,
            )
            .await;
        denied(&r, &format!("{alice_p} may not describe group:{group}"))?;

        // delete, of a group and of a topic.
        let r = b
            .call(
                &DeleteGroupRequest {
                    group: group.clone(),
                },
                T,
            )
            .await;
        denied(&r, &format!("{bob_p} may not delete group:{group}"))?;
        grant(&addr, ops_key, &bob_p, &format!("group:{group}"), "delete").await?;
        let deletion = DeleteGroupRequest {
            group: group.clone(),
        };
        settled(|| b.call(&deletion, T)).await?;
        let r = a.call(&DeleteTopicRequest { name: raw.clone() }, T).await;
        denied(&r, &format!("{alice_p} may not delete topic:{raw}"))?;
        grant(&addr, ops_key, &alice_p, &format!("topic:{raw}"), "delete").await?;
        a.call(&DeleteTopicRequest { name: raw.clone() }, T).await?;

        // admin: ACLs themselves and cluster operations.
        let entry = AclEntry {
            principal: alice_p.clone(),
            resource: "topic:*".into(),
            operation: "produce".into(),
        };
        let r = a
            .call(
                &AlterAclRequest {
                    add: true,
                    acl: entry,
                },
                T,
            )
            .await;
        denied(&r, &format!("{alice_p} may not admin cluster"))?;
        let r = a.call(&ListAclsRequest {}, T).await;
        denied(&r, &format!("{alice_p} may not describe cluster"))?;
        let skip = SkipDamageRequest {
            topic: t.clone(),
            partition: 0,
            first_offset: 0,
            reason: "none".into(),
        };
        denied(&a.call(&skip, T).await, "may not admin cluster")?;
        let alice_file = dir.path().join("alice.key");
        let alice_seed: String = alice
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&alice_file, alice_seed)?;
        let cli = steme(
            &addr,
            &["--auth-key", alice_file.to_str().unwrap(), "acl", "list"],
            "",
            T,
        )
        .await?;
        ensure!(
            !cli.status.success() && cli.stderr.contains("may not describe cluster"),
            "{cli:?}"
        );

        // The list, as JSON lines.
        let listed = acl(&addr, ops_key, &["list", "--json"]).await?.success()?;
        let lines: Vec<serde_json::Value> = listed
            .stdout
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let want = serde_json::json!({
            "principal": alice_p, "resource": format!("topic:{t}"), "operation": "produce"
        });
        ensure!(lines.len() == 7 && lines.contains(&want), "{lines:?}");

        // A removal takes effect on the open connection; removing twice is an error.
        let removal = [
            "remove",
            "--principal",
            &alice_p,
            "--resource",
            &format!("topic:{t}"),
            "--operation",
            "produce",
        ];
        acl(&addr, ops_key, &removal).await?.success()?;
        let r = a.call(&produce(&t, &unique("again")).unwrap(), T).await;
        denied(&r, &format!("{alice_p} may not produce to topic:{t}"))?;
        let again = acl(&addr, ops_key, &removal).await?;
        ensure!(
            !again.status.success() && again.stderr.contains("no such ACL"),
            "{again:?}"
        );
        // A typo is named before anything is sent.
        let typo = acl(
            &addr,
            ops_key,
            &[
                "add",
                "--principal",
                &alice_p,
                "--resource",
                "topics:x",
                "--operation",
                "produce",
            ],
        )
        .await?;
        ensure!(
            !typo.status.success() && typo.stderr.contains("resource `topics:x`"),
            "{typo:?}"
        );

        // The superuser needs no ACL, but internal topics are closed to it too.
        let su = connect(&addr, &ops).await?;
        let records = produce(&t, &unique("su"))?;
        settled(|| su.call(&records, T)).await?;
        su.call(&fetch(&t), T).await?;
        for r in [
            su.call(&produce("__groups", &run)?, T).await.map(drop),
            su.call(&fetch("__groups"), T).await.map(drop),
            su.call(
                &DeleteTopicRequest {
                    name: "__groups".into(),
                },
                T,
            )
            .await
            .map(drop),
        ] {
            match r {
                Err(ClientError::Api(e)) if e.to_string().contains("internal topics") => {}
                other => anyhow::bail!("the superuser reached __groups: {other:?}"),
            }
        }
        Ok(())
    })
    .await
}
