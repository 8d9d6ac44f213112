//! Client authentication against a real broker process: by key (a challenge signed with
//! the Ed25519 key `steme keygen` writes) and by client certificate, under `--auth
//! required`. The attacks first: no principal at all, a proof signed by another key, a
//! proof replayed on another connection, a proof without a challenge — each refused with a
//! clear error and the connection closed.

use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::connection::{AuthKey, Connection, ConnectionConfig};
use steme_client::{ClientError, ClientTls, Producer, ProducerConfig};
use steme_protocol::messages::authenticate::{
    AuthChallengeRequest, AuthenticateRequest, key_principal,
};
use steme_protocol::messages::metadata::MetadataRequest;
use steme_protocol::{ApiError, ErrorCode, SigningKey};
use steme_tests::cli::steme;
use steme_tests::pki::Pki;
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::workload::{key, produce_all, signed};
use steme_tests::{unique, within};

const T: Duration = Duration::from_secs(30);

fn code(r: &Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match r {
        Err(ClientError::Api(e)) => Some(e.code()),
        _ => None,
    }
}

async fn metadata(conn: &Connection) -> Result<(), ClientError> {
    conn.call(&MetadataRequest { topics: None }, T)
        .await
        .map(|_| ())
}

fn with_key(k: &SigningKey) -> ConnectionConfig {
    ConnectionConfig {
        auth_key: Some(AuthKey(k.clone())),
        ..ConnectionConfig::default()
    }
}

/// A bare connection's challenge.
async fn challenge(conn: &Connection) -> anyhow::Result<[u8; 32]> {
    Ok(conn.call(&AuthChallengeRequest {}, T).await?.nonce)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_authenticate_and_forged_or_replayed_proofs_are_refused() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: vec!["--auth".into(), "required".into()],
    })?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(120), async {
        // No principal: the handshake works, anything else is refused and the line closed.
        let anon = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let r = metadata(&anon).await;
        ensure!(code(&r) == Some(ErrorCode::AuthenticationRequired), "{r:?}");
        ensure!(metadata(&anon).await.is_err(), "the connection stayed open");
        let cli = steme(&addr, &["topic", "list"], "", T).await?;
        ensure!(
            !cli.status.success() && cli.stderr.contains("requires authentication"),
            "{cli:?}"
        );

        // A key proves itself; its principal is key:<hex public key>.
        let alice = key(21);
        let conn = Connection::connect(&addr, &with_key(&alice)).await?;
        let expected = key_principal(&alice.verifying_key().to_bytes());
        ensure!(
            conn.principal() == Some(expected.as_str()),
            "{:?}",
            conn.principal()
        );
        metadata(&conn).await?;

        // Signed by one key, claiming another: refused.
        let mallory = key(22);
        let bare = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let nonce = challenge(&bare).await?;
        let mut forged = AuthenticateRequest::sign(&mallory, &nonce);
        forged.public_key = alice.verifying_key().to_bytes();
        let r = bare.call(&forged, T).await;
        ensure!(code(&r) == Some(ErrorCode::AuthenticationFailed), "{r:?}");
        ensure!(
            metadata(&bare).await.is_err(),
            "still open after a forged proof"
        );

        // A good proof replayed on another connection (another challenge): refused.
        let first = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let proof = AuthenticateRequest::sign(&alice, &challenge(&first).await?);
        let second = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        challenge(&second).await?;
        let r = second.call(&proof, T).await;
        ensure!(code(&r) == Some(ErrorCode::AuthenticationFailed), "{r:?}");
        // ... and without any challenge at all.
        let third = Connection::connect(&addr, &ConnectionConfig::default()).await?;
        let r = third.call(&proof, T).await;
        ensure!(code(&r) == Some(ErrorCode::AuthenticationFailed), "{r:?}");
        // The original connection can still use it once.
        let r = first.call(&proof, T).await?;
        ensure!(r.principal == expected);
        // One principal per connection: authenticating again on it (with a fresh key, for
        // a fresh quota, say) is refused.
        let r = first.call(&AuthChallengeRequest {}, T).await;
        ensure!(
            code(&r) == Some(ErrorCode::AuthenticationFailed)
                && format!("{r:?}").contains("already authenticated"),
            "{r:?}"
        );

        // The CLI with the file `steme keygen` writes; the library's producer with a key.
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("client.key");
        let file_arg = file.display().to_string();
        steme(&addr, &["keygen", "--out", &file_arg], "", T)
            .await?
            .success()?;
        let topic = unique("auth");
        steme(
            &addr,
            &[
                "--auth-key",
                &file_arg,
                "topic",
                "create",
                &topic,
                "--partitions",
                "2",
            ],
            "",
            T,
        )
        .await?
        .success()?;
        let mut config = ProducerConfig::default();
        config.client.connection.auth_key = Some(AuthKey(alice.clone()));
        let producer = Producer::connect(&addr, &topic, config).await?;
        ensure!(
            produce_all(&producer, &signed(&topic, 50, 100)?)
                .await?
                .len()
                == 50
        );
        let listed = steme(&addr, &["--auth-key", &file_arg, "topic", "list"], "", T)
            .await?
            .success()?;
        ensure!(listed.stdout.contains(&topic));
        ensure!(!broker.log_shows_panic());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_a_principal() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let mut args = pki.broker_args();
    args.extend(["--auth".into(), "required".into()]);
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args,
    })?;
    let addr = broker.bootstrap();
    within(Duration::from_secs(60), async {
        let tls = |cert: bool| -> anyhow::Result<ConnectionConfig> {
            let pair = (pki.file("client.pem"), pki.file("client.key"));
            let tls = ClientTls::from_pem_files(
                &pki.file("ca.pem"),
                cert.then_some((pair.0.as_path(), pair.1.as_path())),
            )?;
            Ok(ConnectionConfig {
                tls: Some(tls),
                ..ConnectionConfig::default()
            })
        };
        // TLS alone is not a principal.
        let conn = Connection::connect(&addr, &tls(false)?).await?;
        let r = metadata(&conn).await;
        ensure!(code(&r) == Some(ErrorCode::AuthenticationRequired), "{r:?}");
        // A client certificate is (cert:<CN>): no authentication request needed.
        let conn = Connection::connect(&addr, &tls(true)?).await?;
        metadata(&conn).await?;
        create_topic_over(&conn).await?;
        ensure!(!broker.log_shows_panic());
        Ok(())
    })
    .await
}

/// A request that changes something, to show the certificate's connection is served.
async fn create_topic_over(conn: &Connection) -> anyhow::Result<()> {
    use steme_protocol::messages::create_topic::CreateTopicRequest;
    let r = conn
        .call(
            &CreateTopicRequest {
                name: unique("by-cert"),
                partitions: 1,
                replication_factor: 1,
                configs: Vec::new(),
            },
            T,
        )
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(ClientError::Api(ApiError::Other { code, message })) => {
            anyhow::bail!("{code:?}: {message}")
        }
        Err(e) => Err(e).context("create topic"),
    }
}
