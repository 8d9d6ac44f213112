//! Producing and consuming through the client library against a real broker process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::ensure;
use steme_client::{Producer, ProducerConfig};
use steme_tests::workload::{
    check_acks_present, check_hlc_increasing, check_log, create_topic, high_watermarks,
    produce_all, read_topic, signed,
};
use steme_tests::{BrokerProcess, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_100k_and_consume_back_exactly() -> anyhow::Result<()> {
    const COUNT: usize = 100_000;
    // Signing first, while nothing else competes for the cores.
    let t = Instant::now();
    let run = unique("100k");
    let assertions = tokio::task::spawn_blocking(move || signed(&run, COUNT, 200)).await??;
    eprintln!("signed {COUNT} in {:?}", t.elapsed());

    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(120), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 4).await?;
        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;

        let t = Instant::now();
        let acks = produce_all(&producer, &assertions).await?;
        producer.close().await?;
        eprintln!("produced {COUNT} in {:?}", t.elapsed());
        ensure!(
            acks.iter().all(|a| !a.duplicate),
            "a fresh assertion was a duplicate"
        );
        for (a, ack) in assertions.iter().zip(&acks) {
            ensure!(ack.id == a.id(), "ack of {} names {}", a.id(), ack.id);
            ensure!(ack.partition == producer.partition_of(&a.assertion().subject));
        }
        let distinct: HashSet<(u32, u64)> = acks.iter().map(|a| (a.partition, a.offset)).collect();
        ensure!(
            distinct.len() == COUNT,
            "two acks share a partition and offset"
        );

        let t = Instant::now();
        let log = read_topic(&bootstrap, "facts", Duration::from_secs(60)).await?;
        eprintln!(
            "consumed {COUNT} (verifying signatures) in {:?}",
            t.elapsed()
        );
        let index = check_log(&log)?;
        ensure!(
            index.records == COUNT,
            "the log holds {} records, {COUNT} were produced",
            index.records
        );
        check_acks_present(&log, &acks)?;
        ensure!(
            log.values().all(|p| !p.is_empty()),
            "some partition got nothing: {:?}",
            log.iter().map(|(p, r)| (*p, r.len())).collect::<Vec<_>>()
        );
        check_hlc_increasing(&log)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproducing_is_all_duplicates_and_log_unchanged() -> anyhow::Result<()> {
    const COUNT: usize = 3_000;
    let assertions = signed(&unique("dup"), COUNT, 200)?;
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(60), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 3).await?;
        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let first = produce_all(&producer, &assertions).await?;
        let watermarks = high_watermarks(&bootstrap, "facts").await?;
        ensure!(
            watermarks.iter().sum::<u64>() == COUNT as u64,
            "{watermarks:?}"
        );

        // Again, through a new producer (nothing cached on the client side).
        let again = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let second = produce_all(&again, &assertions).await?;
        for (a, b) in first.iter().zip(&second) {
            ensure!(
                b.duplicate,
                "{} was appended again at {}@{}",
                b.id,
                b.partition,
                b.offset
            );
            ensure!(
                (a.id, a.partition, a.offset, a.hlc) == (b.id, b.partition, b.offset, b.hlc),
                "duplicate ack {b:?} differs from the original {a:?}"
            );
        }
        ensure!(high_watermarks(&bootstrap, "facts").await? == watermarks);
        let log = read_topic(&bootstrap, "facts", Duration::from_secs(30)).await?;
        ensure!(check_log(&log)?.records == COUNT);
        check_acks_present(&log, &first)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causality_token_orders_across_partitions() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(60), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 4).await?;
        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        // One assertion per partition, so that each one below lands somewhere new.
        let mut by_partition = vec![Vec::new(); 4];
        for a in signed(&unique("causal"), 400, 120)? {
            by_partition[producer.partition_of(&a.assertion().subject) as usize].push(a);
        }
        ensure!(by_partition.iter().all(|v| v.len() >= 3));

        // The same producer: its token is the ack it just received.
        let first = producer.send(by_partition[0].pop().expect("len")).await?;
        ensure!(producer.causality() == Some(first.hlc));
        let second = producer.send(by_partition[1].pop().expect("len")).await?;
        ensure!(second.partition == 1 && first.partition == 0);
        ensure!(
            second.hlc > first.hlc,
            "partition 1 stamped {} after seeing {}",
            second.hlc,
            first.hlc
        );

        // A token ahead of the broker's clock (half a second, within the allowed skew), from
        // a producer that never talked to the broker: the next stamp is still later.
        let other = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        let ahead = second.hlc + (1 << 31);
        other.observe_hlc(ahead);
        let third = other.send(by_partition[2].pop().expect("len")).await?;
        ensure!(third.partition == 2);
        ensure!(
            third.hlc > ahead,
            "stamped {} after token {ahead}",
            third.hlc
        );
        // And that order carries on through the original producer once it sees it.
        producer.observe_hlc(third.hlc);
        let fourth = producer.send(by_partition[3].pop().expect("len")).await?;
        ensure!(fourth.hlc > third.hlc);
        Ok(())
    })
    .await
}

/// Linger is a cap while a request is in flight, never a wait on an idle partition: with a
/// linger of an hour, a lone send is answered at once, and so is a group of sends. The
/// group's acks come back in the order given, one future for all of them, also when the
/// group is larger than the producer's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_sends_at_once_whatever_the_linger() -> anyhow::Result<()> {
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(60), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 2).await?;
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(&bootstrap, "facts", config).await?;
        let mut assertions = signed(&unique("idle"), 2_001, 120)?;
        let lone = assertions.pop().expect("len");
        let id = lone.id();
        let ack = tokio::time::timeout(Duration::from_secs(20), producer.send(lone))
            .await
            .map_err(|_| anyhow::anyhow!("a lone send waited for its linger"))??;
        ensure!(ack.id == id && !ack.duplicate);

        let ids: Vec<_> = assertions.iter().map(|a| a.id()).collect();
        let pending = producer.enqueue_many(assertions.into_iter()).await?;
        let acks = tokio::time::timeout(Duration::from_secs(20), pending)
            .await
            .map_err(|_| anyhow::anyhow!("a group waited for its linger"))?;
        ensure!(acks.len() == ids.len());
        let mut placed = HashSet::new();
        for (ack, id) in acks.into_iter().zip(&ids) {
            let ack = ack?;
            ensure!(ack.id == *id, "acks out of order");
            ensure!(placed.insert((ack.partition, ack.offset)));
        }
        ensure!(
            high_watermarks(&bootstrap, "facts")
                .await?
                .iter()
                .sum::<u64>()
                == 2_001
        );
        producer.close().await?;

        // A group travels in parts of at most an eighth of the buffer: with a buffer of
        // 4 KiB, a group of 300 goes a record or two at a time, and every ack comes back
        // in order (a part larger than the buffer would wait forever).
        let config = ProducerConfig {
            buffer_bytes: 4096,
            ..ProducerConfig::default()
        };
        let small = Producer::connect(&bootstrap, "facts", config).await?;
        let group = signed(&unique("small-buffer"), 300, 120)?;
        let ids: Vec<_> = group.iter().map(|a| a.id()).collect();
        let acks = tokio::time::timeout(Duration::from_secs(20), async {
            small
                .enqueue_many(group.into_iter())
                .await?
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| anyhow::anyhow!("a group larger than the buffer did not go through"))??;
        ensure!(
            acks.iter().map(|a| a.id).eq(ids.iter().copied()),
            "acks out of order"
        );
        small.close().await?;
        Ok(())
    })
    .await
}

/// The consumer fetches ahead: the next fetch is under way while the caller handles a poll's
/// records. Reading a topic in small fetches, pausing and resuming a partition between
/// polls, still returns every record once, in offset order, and a paused partition's
/// records never arrive while it is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_ahead_with_pauses_returns_each_record_once_in_order() -> anyhow::Result<()> {
    use steme_client::consumer::{Consumer, ConsumerConfig, Position};
    let broker = BrokerProcess::start()?;
    within(Duration::from_secs(90), async {
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, "facts", 2).await?;
        let producer = Producer::connect(&bootstrap, "facts", ProducerConfig::default()).await?;
        // Small groups, each acknowledged before the next: many small batches.
        for group in signed(&unique("ahead"), 1_500, 150)?.chunks(6) {
            for ack in producer.enqueue_many(group.iter().cloned()).await?.await {
                ack?;
            }
        }
        producer.close().await?;
        let ends = high_watermarks(&bootstrap, "facts").await?;

        let config = ConsumerConfig {
            max_bytes_per_partition: 1, // one batch a fetch
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::connect(&bootstrap, config).await?;
        consumer.assign_all("facts").await?;
        for p in 0..2 {
            consumer.seek(p, Position::Earliest).await?;
        }
        let mut next = [0u64; 2];
        let mut polls = 0u32;
        while next.iter().zip(&ends).any(|(n, e)| n < e) {
            polls += 1;
            ensure!(polls < 5_000, "no progress: at {next:?} of {ends:?}");
            // Every third poll, partition 1 sits out, with its next fetch already sent.
            let paused = polls.is_multiple_of(3);
            if paused {
                consumer.pause(1)?;
            }
            for r in consumer.poll(Duration::from_millis(20)).await? {
                let p = r.partition() as usize;
                ensure!(
                    !(paused && p == 1),
                    "a record of a paused partition arrived"
                );
                ensure!(
                    r.offset() == next[p],
                    "partition {p}: offset {} after {}",
                    r.offset(),
                    next[p]
                );
                next[p] += 1;
            }
            if paused {
                consumer.resume(1)?;
            }
        }
        ensure!(
            polls > 100,
            "{polls} polls: too few to exercise fetching ahead"
        );
        ensure!(
            next.to_vec() == ends,
            "read {next:?}, the log holds {ends:?}"
        );
        Ok(())
    })
    .await
}
