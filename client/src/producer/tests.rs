use super::*;
use steme_protocol::messages::metadata::{MetadataResponse, PartitionMetadata, TopicMetadata};
use steme_protocol::messages::produce::ProduceResponse;
use steme_protocol::{Assertion, RecordBatch, SigningKey, Value};

fn signed(i: u64, text_len: usize) -> SignedAssertion {
    Assertion {
        subject: format!("urn:test:{i}"),
        predicate: "p".into(),
        object: Value::Text("x".repeat(text_len)),
        source: "test".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_700_000_000_000 + i,
    }
    .sign(&SigningKey::from_bytes(&[3; 32]))
    .unwrap()
}

fn enqueued(a: SignedAssertion) -> (Enqueued, oneshot::Receiver<Result<Ack, ClientError>>) {
    let (reply, rx) = oneshot::channel();
    let reserved = record_size(&a);
    (
        Enqueued {
            assertion: a,
            reserved,
            reply: Reply::One(reply),
        },
        rx,
    )
}

#[test]
fn batch_seals_before_overflowing_max_bytes() {
    let (group, _rx) = mpsc::channel(1);
    let one = record_size(&signed(0, 100));
    let max = HEADER_LEN + 3 * one + one / 2; // room for 3.5 records
    let mut open = OpenBatch::new();
    let mut sealed = Vec::new();
    for i in 0..7 {
        let (rec, _) = enqueued(signed(i, 100));
        sealed.extend(open.push(rec, max, &group));
        assert!(open.size() <= max);
    }
    sealed.extend(open.seal(&group));
    let counts: Vec<usize> = sealed.iter().map(|s| s.waiters.len()).collect();
    assert_eq!(counts, vec![3, 3, 1]);
    let mut next = 0;
    for s in &sealed {
        let batch = RecordBatch::new(s.batch.clone()).expect("valid batch");
        assert_eq!(batch.record_count() as usize, s.waiters.len());
        assert_eq!(s.reserved, s.waiters.len() * one);
        for (rec, w) in batch.records().zip(&s.waiters) {
            assert_eq!(rec.id(), w.id);
            assert_eq!(rec.id(), signed(next, 100).id(), "records stay in order");
            next += 1;
        }
    }
    assert!(open.is_empty() && open.seal(&group).is_none());
}

#[test]
fn oversized_record_travels_alone() {
    let (group, _rx) = mpsc::channel(1);
    let max = 512;
    let mut open = OpenBatch::new();
    let (small, _) = enqueued(signed(0, 10));
    assert!(open.push(small, max, &group).is_none());
    let (big, _) = enqueued(signed(1, 2000));
    let first = open.push(big, max, &group).expect("small one sealed first");
    assert_eq!(first.waiters.len(), 1);
    assert!(open.is_full(max));
    let second = open.seal(&group).unwrap();
    assert_eq!(RecordBatch::new(second.batch).unwrap().record_count(), 1);
}

#[test]
fn acks_map_duplicates_to_their_existing_offsets() {
    use steme_protocol::messages::produce::Existing;
    let resp = ProduceResponse {
        base_offset: 10,
        base_hlc: 1000,
        throttle_ms: 0,
        duplicates: vec![
            None,
            Some(Existing {
                offset: 3,
                hlc: 300,
                partition: None,
            }),
            None,
        ],
    };
    let acks: Vec<_> = resp.record_acks().collect();
    assert_eq!((acks[0].offset, acks[0].duplicate), (10, false));
    assert_eq!(
        (acks[1].offset, acks[1].hlc, acks[1].duplicate),
        (3, 300, true)
    );
    assert_eq!((acks[2].offset, acks[2].hlc), (11, 1001));
}

#[test]
fn partitioning_matches_the_protocol() {
    for i in 0..100 {
        let a = signed(i, 1);
        let p = partition_for(&a.assertion().subject, 8);
        assert!(p < 8);
        assert_eq!(p, partition_for(&format!("urn:test:{i}"), 8));
    }
}

/// Shared state of a producer of topic `t` with one partition, linger an hour (nothing is
/// sealed by time), on a cluster no test reaches.
fn one_partition_shared() -> Arc<Shared> {
    let cluster = Cluster::lazy("127.0.0.1:1", ClientConfig::default()).unwrap();
    Arc::new(Shared {
        cluster,
        topic: "t".into(),
        partitions: AtomicU32::new(1),
        config: ProducerConfig {
            linger: Duration::from_secs(3600),
            max_batch_bytes: 1 << 30,
            ..ProducerConfig::default()
        },
        max_hlc: AtomicU64::new(0),
        buffer: Semaphore::new(1 << 30),
        closed: AtomicBool::new(false),
        idle: Notify::new(),
    })
}

#[tokio::test]
async fn a_long_queue_is_handled_in_bursts_without_losing_a_record() {
    let shared = one_partition_shared();
    let total = DRAIN_BURST * 2 + 10;
    let (tx, rx) = mpsc::channel(total);
    let mut acc = Accumulator::new(shared, rx);
    let mut acks = Vec::new();
    for i in 0..total {
        let (rec, ack) = enqueued(signed(i as u64, 1));
        acks.push(ack);
        tx.try_send(Command::Record(rec)).unwrap();
    }
    let mut handled = 0;
    while let Ok(first) = acc.rx.try_recv() {
        assert!(acc.burst(Some(first)).is_continue());
        let now = acc.open[0].waiters.len();
        assert!(now - handled <= DRAIN_BURST, "a burst is bounded");
        handled = now;
    }
    assert_eq!(
        acc.open[0].waiters.len(),
        total,
        "every record is in the open batch"
    );
    assert!(
        acks.iter_mut().all(|a| a.try_recv().is_err()),
        "none answered yet"
    );
}

#[test]
fn config_rejects_tiny_batches() {
    let c = ProducerConfig {
        max_batch_bytes: 10,
        ..ProducerConfig::default()
    };
    assert!(matches!(c.validate(), Err(ClientError::Config(_))));
    ProducerConfig::default().validate().unwrap();
}

/// Topic `t` with `partitions` partitions, all led by broker 1.
fn topic_metadata(partitions: u32) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![],
        metadata_leader: None,
        topics: vec![TopicMetadata {
            name: "t".into(),
            partitions: (0..partitions)
                .map(|partition| PartitionMetadata {
                    partition,
                    leader: Some(1),
                    leader_epoch: 1,
                    replicas: vec![1],
                    target: None,
                })
                .collect(),
            map_epoch: u64::from(partitions > 1),
            splits: vec![],
        }],
    }
}

/// The subjects of a sealed batch's records, in order.
fn subjects(sealed: &accumulator::Sealed) -> Vec<String> {
    let batch = RecordBatch::new(sealed.batch.clone()).unwrap();
    batch
        .records()
        .map(|r| {
            steme_protocol::assertion::subject_of(r.assertion)
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn growth_holds_new_partitions_until_the_old_map_is_answered() {
    let shared = one_partition_shared();
    let topic = ["t".to_owned()];
    shared
        .cluster
        .merge_for_test(&topic_metadata(1), Some(&topic));
    let (_tx, rx) = mpsc::channel(1);
    let mut acc = Accumulator::new(shared.clone(), rx);
    let (to_p0, mut sent_p0) = mpsc::unbounded_channel();
    acc.workers[0] = Some(to_p0);
    let mut acks = Vec::new();
    for i in 0..40 {
        let (rec, ack) = enqueued(signed(i, 1));
        acks.push(ack);
        acc.add(rec);
    }

    // The topic grows to 4: what was routed by 1 partition is sealed and sent at once.
    shared
        .cluster
        .merge_for_test(&topic_metadata(4), Some(&topic));
    acc.follow_growth();
    assert_eq!(acc.open.len(), 4);
    assert_eq!(shared.partitions.load(Ordering::Relaxed), 4);
    let old = sent_p0.try_recv().expect("the old map's batch is sent");
    assert_eq!(old.waiters.len(), 40);
    let mut sent = vec![];
    for p in 1..4 {
        let (tx, rx) = mpsc::unbounded_channel();
        acc.workers[p] = Some(tx);
        sent.push(rx);
    }

    // The same subjects again: the moved ones go to partitions 1 to 3, and wait there.
    for i in 0..40 {
        let (rec, ack) = enqueued(signed(i, 2));
        acks.push(ack);
        acc.add(rec);
    }
    acc.seal_all();
    let stayed = sent_p0.try_recv().expect("partition 0 is not held");
    assert!(stayed.waiters.len() < 40, "some subjects moved");
    assert!(
        sent.iter_mut().all(|rx| rx.try_recv().is_err()),
        "new partitions are held"
    );
    assert!(
        tokio::time::timeout(
            Duration::from_millis(20),
            accumulator::old_map_answered(&mut acc.gate)
        )
        .await
        .is_err(),
        "the old map's batch is not answered yet"
    );

    // Once the old map's batch is answered (dropped here), the held batches leave.
    drop(old);
    accumulator::old_map_answered(&mut acc.gate).await;
    acc.open_gate();
    assert!(acc.gate.is_none());
    let mut moved = 0;
    for (i, rx) in sent.iter_mut().enumerate() {
        let p = i as u32 + 1;
        while let Ok(batch) = rx.try_recv() {
            for s in subjects(&batch) {
                assert_eq!(partition_for(&s, 4), p);
                moved += 1;
            }
        }
    }
    assert_eq!(moved + stayed.waiters.len(), 40);
    for s in subjects(&stayed) {
        assert_eq!(partition_for(&s, 4), 0);
    }
}
