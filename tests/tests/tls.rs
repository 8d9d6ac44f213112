//! TLS on the client listener, against a real broker process with certificates made for
//! the test: a round trip through the library and the CLI (with and without a client
//! certificate), and the refusals — a client that trusts another CA, a client certificate
//! from another CA, and a plaintext client, each with a clear error.

use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::connection::{Connection, ConnectionConfig};
use steme_client::{
    Admin, ClientConfig, ClientTls, Consumer, ConsumerConfig, Position, Producer, ProducerConfig,
    TopicOptions,
};
use steme_tests::cli::steme;
use steme_tests::pki::Pki;
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::workload::{produce_all, signed};
use steme_tests::{unique, within};

const T: Duration = Duration::from_secs(30);

fn client(tls: ClientTls) -> ClientConfig {
    let mut c = ClientConfig::default();
    c.connection.tls = Some(tls);
    c
}

/// The whole error chain, for matching on its words.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_and_every_refusal() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: pki.broker_args(),
    })?;
    let bootstrap = broker.bootstrap();
    within(Duration::from_secs(120), async {
        // The library: create, produce and consume over TLS.
        let tls = ClientTls::from_pem_files(&pki.file("ca.pem"), None)?;
        let topic = unique("tls");
        let admin = Admin::connect(&bootstrap, client(tls.clone())).await?;
        admin
            .create_topic(&topic, 2, TopicOptions::default())
            .await?;
        let config = ProducerConfig {
            client: client(tls.clone()),
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(&bootstrap, &topic, config).await?;
        let acks = produce_all(&producer, &signed(&topic, 500, 200)?).await?;
        ensure!(acks.len() == 500);
        let config = ConsumerConfig {
            client: client(tls.clone()),
            verify: true,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::connect(&bootstrap, config).await?;
        for p in 0..consumer.assign_all(&topic).await? {
            consumer.seek(p, Position::Earliest).await?;
        }
        let mut read = 0;
        let deadline = tokio::time::Instant::now() + T;
        while read < 500 && tokio::time::Instant::now() < deadline {
            read += consumer.poll(Duration::from_millis(200)).await?.len();
        }
        ensure!(read == 500, "read {read} of 500 records over TLS");

        // The CLI, trusting the CA, with and without a client certificate.
        let ca = pki.file("ca.pem").display().to_string();
        let (cert, key) = (
            pki.file("client.pem").display().to_string(),
            pki.file("client.key").display().to_string(),
        );
        let listed = steme(&bootstrap, &["--tls-ca", &ca, "topic", "list"], "", T)
            .await?
            .success()?;
        ensure!(listed.stdout.contains(&topic), "{}", listed.stdout);
        let args = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
        let consumed = steme(
            &bootstrap,
            &[&args[..], &["consume", &topic]].concat(),
            "",
            T,
        )
        .await?
        .success()?;
        ensure!(consumed.stdout.lines().count() == 500);

        // A client that trusts another CA refuses the broker's certificate.
        let other = ClientTls::from_pem_files(&pki.file("other-ca.pem"), None)?;
        let cfg = ConnectionConfig {
            tls: Some(other),
            ..ConnectionConfig::default()
        };
        let e = Connection::connect(&bootstrap, &cfg)
            .await
            .err()
            .context("a client trusting another CA connected")?;
        ensure!(chain(&e).contains("certificate"), "{}", chain(&e));

        // A client certificate from another CA is refused by the broker.
        let impostor = ClientTls::from_pem_files(
            &pki.file("ca.pem"),
            Some((&pki.file("other-client.pem"), &pki.file("other-client.key"))),
        )?;
        let cfg = ConnectionConfig {
            tls: Some(impostor),
            ..ConnectionConfig::default()
        };
        ensure!(
            Connection::connect(&bootstrap, &cfg).await.is_err(),
            "a client certificate from another CA was accepted"
        );

        // A plaintext client is told the listener speaks TLS only.
        let e = Connection::connect(&bootstrap, &ConnectionConfig::default())
            .await
            .err()
            .context("a plaintext client connected to the TLS listener")?;
        ensure!(chain(&e).contains("TLS only"), "{}", chain(&e));
        let plain = steme(&bootstrap, &["topic", "list"], "", T).await?;
        ensure!(
            !plain.status.success() && plain.stderr.contains("TLS only"),
            "{plain:?}"
        );
        ensure!(!broker.log_shows_panic());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_half_its_tls_settings_refuses_to_start() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let cert = pki.file("broker.pem").display().to_string();
    let started = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: vec!["--tls-cert".into(), cert],
    });
    let e = started
        .err()
        .context("a broker started with --tls-cert alone")?;
    ensure!(format!("{e:#}").contains("--tls-key"), "{e:#}");
    Ok(())
}
