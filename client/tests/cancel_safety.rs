//! Cancel safety of `Producer::enqueue` and `GroupConsumer::poll` against a real broker in
//! this process: futures dropped at every await point, over and over, leak no buffer room,
//! lose no record and no assignment.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use futures::FutureExt;
use steme_client::{
    AssertionId, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, PendingAck, Position,
    Producer, SignedAssertion,
};
use steme_protocol::batch::RECORD_ASSERTION_OFFSET;

use common::{TestBroker, producer_config, signed, within};

fn size(a: &SignedAssertion) -> usize {
    RECORD_ASSERTION_OFFSET + a.canonical().len()
}

/// Every id stored in partition 0 of `topic`.
async fn stored_ids(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<AssertionId>> {
    let mut consumer = Consumer::connect(bootstrap, ConsumerConfig::default()).await?;
    consumer.assign(topic, &[0]).await?;
    consumer.seek(0, Position::Earliest).await?;
    let end = consumer.fetch_high_watermark(0).await?;
    let mut ids = Vec::new();
    for _ in 0..1000 {
        if consumer.position(0) >= Some(end) {
            break;
        }
        ids.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await?
                .iter()
                .map(|r| r.id()),
        );
    }
    anyhow::ensure!(consumer.position(0) >= Some(end), "never read up to {end}");
    Ok(ids)
}

/// Sends one record that needs the producer's whole buffer: it can go only if every permit
/// taken before was given back.
async fn whole_buffer_is_free(producer: &Producer, buffer: usize) -> anyhow::Result<()> {
    let huge = signed(1, buffer)?.pop().expect("one");
    anyhow::ensure!(size(&huge) >= buffer);
    tokio::time::timeout(Duration::from_secs(10), producer.send(huge))
        .await
        .map_err(|_| anyhow::anyhow!("the whole buffer never became free: permits leaked"))??;
    Ok(())
}

/// On a current-thread runtime the accumulator cannot run while this test enqueues without
/// yielding, so the command channel (1024 slots) fills, and `enqueue` is dropped while it
/// waits for a slot, with its buffer room already taken.
#[tokio::test]
async fn enqueue_dropped_while_waiting_for_a_channel_slot_gives_its_buffer_room_back()
-> anyhow::Result<()> {
    within(Duration::from_secs(60), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("slots", 1).await?;
        let records = signed(1500, 1)?;
        let buffer: usize = records.iter().map(size).sum();
        let producer =
            Producer::connect(&broker.bootstrap, "slots", producer_config(buffer)).await?;
        let mut acks: Vec<(AssertionId, PendingAck)> = Vec::new();
        let mut cancelled = 0;
        for a in &records {
            match producer.enqueue(a.clone()).now_or_never() {
                Some(ack) => acks.push((a.id(), ack?)),
                None => cancelled += 1,
            }
        }
        assert!(
            cancelled > 0,
            "the channel never filled: nothing was cancelled"
        );
        producer.flush().await?;
        let mut sent = HashSet::new();
        for (id, ack) in acks {
            assert_eq!(ack.await?.id, id);
            sent.insert(id);
        }
        whole_buffer_is_free(&producer, buffer).await?;
        let stored = stored_ids(&broker.bootstrap, "slots").await?;
        let stored_small: HashSet<AssertionId> = stored
            .iter()
            .copied()
            .filter(|id| sent.contains(id))
            .collect();
        assert_eq!(stored_small, sent, "every record enqueued is stored");
        assert_eq!(
            stored.len(),
            sent.len() + 1,
            "no cancelled record is stored"
        );
        producer.close().await?;
        broker.stop().await;
        Ok(())
    })
    .await
}

/// `select!` against timers of a few hundred microseconds, on a multi-thread runtime:
/// `enqueue` is dropped while it waits for buffer room (the buffer holds four records),
/// and sometimes just after it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_cancelled_by_select_loses_nothing_and_leaks_no_buffer_room() -> anyhow::Result<()>
{
    within(Duration::from_secs(60), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("selected", 1).await?;
        let records = signed(400, 100)?;
        let buffer = size(&records[0]) * 4;
        let producer =
            Producer::connect(&broker.bootstrap, "selected", producer_config(buffer)).await?;
        let mut acks = Vec::new();
        let mut cancelled = 0;
        for (i, a) in records.iter().enumerate() {
            let wait = Duration::from_micros(50 * (i as u64 % 10));
            tokio::select! {
                ack = producer.enqueue(a.clone()) => acks.push((a.id(), ack?)),
                _ = tokio::time::sleep(wait) => cancelled += 1,
            }
        }
        assert!(cancelled > 0, "no enqueue was cancelled");
        producer.flush().await?;
        let mut sent = HashSet::new();
        for (id, ack) in acks {
            assert_eq!(ack.await?.id, id);
            sent.insert(id);
        }
        // A producer with a four-record buffer can take four records at once again.
        let more = signed(4, 100)?
            .into_iter()
            .map(|a| a.assertion().clone())
            .map(|mut a| {
                a.source = "after".into();
                a.sign(&steme_client::SigningKey::from_bytes(&[9; 32]))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // All four at once, without waiting. `unconstrained`: tokio's cooperative budget,
        // spent by the loops above, could otherwise make a ready acquire say "pending".
        let mut later = Vec::new();
        for a in &more {
            let ack = tokio::task::unconstrained(producer.enqueue(a.clone()))
                .now_or_never()
                .ok_or_else(|| anyhow::anyhow!("the buffer has no room for 4 records"))??;
            later.push(ack);
        }
        producer.flush().await?;
        for ack in later {
            sent.insert(ack.await?.id);
        }
        let stored: HashSet<AssertionId> = stored_ids(&broker.bootstrap, "selected")
            .await?
            .into_iter()
            .collect();
        assert_eq!(
            stored, sent,
            "exactly the records whose enqueue returned are stored"
        );
        producer.close().await?;
        broker.stop().await;
        Ok(())
    })
    .await
}

/// `poll` under timeouts from 0 to 30 ms, so that it is dropped while it applies the
/// assignment (fetching committed offsets), auto-commits, or fetches: the member still
/// gets every partition and every record, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_poll_cancelled_repeatedly_keeps_its_assignment_and_reads_each_record_once()
-> anyhow::Result<()> {
    within(Duration::from_secs(120), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("polled", 4).await?;
        let records = signed(400, 50)?;
        let want: HashSet<AssertionId> = records.iter().map(|a| a.id()).collect();
        let producer =
            Producer::connect(&broker.bootstrap, "polled", producer_config(1 << 20)).await?;
        for ack in producer.send_batch(records).await {
            ack?;
        }
        let mut config = GroupConfig::new("cancelled-polls");
        config.auto_commit = Some(Duration::from_millis(20));
        // A few records per fetch, so reading takes many polls.
        config.consumer.max_bytes_per_partition = 1024;
        let mut member = GroupConsumer::join(&broker.bootstrap, "polled", config).await?;
        let mut seen = Vec::new();
        let mut cancelled = 0u32;
        for i in 0..20_000u64 {
            // Past the last record too: later polls must bring nothing more.
            if seen.len() >= want.len() && i >= 300 {
                break;
            }
            let limit = Duration::from_millis(i % 31);
            match tokio::time::timeout(limit, member.poll(Duration::from_millis(100))).await {
                Ok(records) => seen.extend(records?.iter().map(|r| r.id())),
                Err(_) => cancelled += 1,
            }
        }
        assert!(cancelled > 50, "only {cancelled} polls were cancelled");
        assert_eq!(member.assignment(), vec![0, 1, 2, 3]);
        let unique: HashSet<AssertionId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a record was returned twice");
        assert_eq!(unique, want, "every record was returned");
        member.commit().await?;
        member.close().await?;
        broker.stop().await;
        Ok(())
    })
    .await
}

/// The group's committed offsets, read by a member that joins after `member` closed.
async fn next_members_records(
    bootstrap: &str,
    topic: &str,
    group: &str,
    expect: usize,
) -> anyhow::Result<Vec<AssertionId>> {
    let mut config = GroupConfig::new(group);
    config.auto_commit = None;
    let mut member = GroupConsumer::join(bootstrap, topic, config).await?;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen.extend(
            member
                .poll(Duration::from_millis(200))
                .await?
                .iter()
                .map(|r| r.id()),
        );
        if seen.len() >= expect && member.assignment().len() == 2 {
            // One more poll: nothing else may come.
            let extra = member.poll(Duration::from_millis(300)).await?;
            seen.extend(extra.iter().map(|r| r.id()));
            break;
        }
    }
    member.close().await?;
    Ok(seen)
}

/// The borrowing stream: records taken from it count as processed; after it is dropped the
/// member commits and closes, and the next member starts where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_stream_borrows_the_member_so_commit_and_close_work_after_it() -> anyhow::Result<()> {
    use futures::StreamExt;
    within(Duration::from_secs(120), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("streamed", 2).await?;
        let records = signed(100, 20)?;
        let want: BTreeSet<AssertionId> = records.iter().map(|a| a.id()).collect();
        let producer =
            Producer::connect(&broker.bootstrap, "streamed", producer_config(1 << 20)).await?;
        for ack in producer.send_batch(records).await {
            ack?;
        }
        let mut config = GroupConfig::new("streamers");
        config.auto_commit = None;
        let mut member = GroupConsumer::join(&broker.bootstrap, "streamed", config).await?;
        let first: Vec<AssertionId> = {
            let stream = member.stream(Duration::from_millis(200)).take(60);
            let got: Vec<_> = stream.collect().await;
            got.into_iter()
                .map(|r| r.map(|r| r.id()))
                .collect::<Result<_, _>>()?
        };
        assert_eq!(first.len(), 60);
        member.commit().await?;
        member.close().await?;
        let rest = next_members_records(&broker.bootstrap, "streamed", "streamers", 40).await?;
        assert_eq!(
            rest.len(),
            40,
            "the next member reads exactly what was not taken"
        );
        let all: BTreeSet<AssertionId> = first.iter().chain(&rest).copied().collect();
        assert_eq!(all.len(), 100, "no record read by both");
        assert_eq!(all, want);
        broker.stop().await;
        Ok(())
    })
    .await
}
