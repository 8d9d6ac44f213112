//! Misbehaving connections do not hurt anyone else: a slowloris client, random garbage, a
//! client that hangs up mid-request.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::BytesMut;
use steme_client::{Producer, ProducerConfig};
use steme_protocol::ErrorCode;
use steme_protocol::frame::decode_frame;
use steme_tests::workload::{
    check_acks_present, check_log, create_topic, produce_all, read_topic, signed,
};
use steme_tests::{BrokerOptions, BrokerProcess, unique, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The broker's `frame_timeout_ms` in this test (default 30 s): a frame that has begun
/// must complete within it.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// Deterministic noise (xorshift64*), so that a failure can be replayed.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads until the peer closes (EOF or reset); returns what arrived and how long it took.
async fn read_until_closed(
    s: &mut TcpStream,
    timeout: Duration,
) -> anyhow::Result<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), s.read(&mut buf))
            .await
            .with_context(|| format!("the broker kept the connection open for {timeout:?}"))?;
        match n {
            Ok(0) | Err(_) => return Ok((got, started.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_garbage_do_not_hurt_other_clients() -> anyhow::Result<()> {
    let broker = BrokerProcess::start_with(BrokerOptions {
        args: vec![
            "--frame-timeout-ms".into(),
            FRAME_TIMEOUT.as_millis().to_string(),
        ],
        ..BrokerOptions::default()
    })?;
    let assertions = signed(&unique("bad"), 2_000, 200)?;
    within(Duration::from_secs(90), async {
        let addr = broker.addr();
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 2).await?;

        // Slowloris: two bytes of a length prefix, then silence, on several connections.
        // Each is watched from the start: when is it cut, and with what.
        let mut slow = Vec::new();
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&[0x40, 0x00]).await?;
            let sent = Instant::now();
            slow.push(tokio::spawn(async move {
                let (reply, _) = read_until_closed(&mut s, FRAME_TIMEOUT * 4).await?;
                anyhow::Ok((reply, sent.elapsed()))
            }));
        }

        // Garbage: 1 KiB of noise. Its first four bytes, read as a length prefix, ask for a
        // frame far beyond the 16 MiB limit, so the broker must drop the connection at once.
        let noise = garbage(1024, 0x5eed);
        let claimed = u32::from_le_bytes(noise[..4].try_into().expect("4 bytes"));
        ensure!(
            claimed > 16 << 20,
            "the seed's prefix {claimed} is not oversized"
        );
        let mut junk = TcpStream::connect(addr).await?;
        junk.write_all(&noise).await?;

        // A client that hangs up halfway through a frame.
        let mut quitter = TcpStream::connect(addr).await?;
        quitter.write_all(&[200, 0, 0, 0, 1, 0, 0, 0, 9]).await?;
        drop(quitter);

        // Everyone else is served as usual meanwhile.
        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let acks = produce_all(&producer, &assertions).await?;
        let log = read_topic(&bootstrap, "facts", Duration::from_secs(30)).await?;
        ensure!(check_log(&log)?.records == assertions.len());
        check_acks_present(&log, &acks)?;

        let (reply, took) = read_until_closed(&mut junk, Duration::from_secs(5)).await?;
        eprintln!(
            "garbage connection closed after {took:?} with {} bytes of reply",
            reply.len()
        );

        // Each slowloris connection was cut when its frame timed out, not before, and told
        // why: an error frame (correlation id 0, Timeout naming frame_timeout_ms).
        for s in slow {
            let (reply, took) = s.await??;
            ensure!(
                took >= FRAME_TIMEOUT - Duration::from_millis(500)
                    && took < FRAME_TIMEOUT + Duration::from_secs(5),
                "a slow client was cut {took:?} after its first bytes; the deadline is {FRAME_TIMEOUT:?}"
            );
            let frame = decode_frame(&mut BytesMut::from(&reply[..]), 16 << 20)?
                .with_context(|| format!("no whole error frame in {reply:?}"))?;
            let text = String::from_utf8_lossy(&frame.body);
            ensure!(
                frame.header.correlation_id == 0
                    && frame.body.get(..2) == Some(&(ErrorCode::Timeout as u16).to_le_bytes()[..])
                    && text.contains("frame_timeout_ms"),
                "a slow client was cut with {:?}: {text:?}",
                frame.header
            );
        }

        // And the broker still serves new clients afterwards.
        let again = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let second = produce_all(&again, &assertions[..10]).await?;
        ensure!(second.iter().all(|a| a.duplicate));
        Ok(())
    })
    .await
}
