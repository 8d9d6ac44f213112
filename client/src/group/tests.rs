//! The group consumer against a real broker in this process, looking at its internals.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use futures::FutureExt;

use super::*;
use common::{TestBroker, within};

/// The heartbeat task delivers an assignment once; it is stopped here so that nothing
/// delivers it again. A `poll` dropped in the middle of applying it must leave it pending,
/// for the next `poll` to apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_dropped_while_applying_an_assignment_leaves_it_pending() -> anyhow::Result<()> {
    within(Duration::from_secs(60), async {
        let broker = TestBroker::start().await?;
        broker.create_topic("assigned", 3).await?;
        let mut member =
            GroupConsumer::join(&broker.bootstrap, "assigned", GroupConfig::new("pending")).await?;
        for _ in 0..500 {
            if lock(&member.membership).pending.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delivered = lock(&member.membership).pending.clone();
        anyhow::ensure!(delivered.is_some(), "no assignment was delivered");
        member.heartbeats.abort();

        let dropped = member.poll(Duration::from_secs(1)).now_or_never();
        assert!(
            dropped.is_none(),
            "poll finished without waiting for the coordinator"
        );
        assert_eq!(
            lock(&member.membership).pending,
            delivered,
            "the assignment is still pending"
        );
        member.poll(Duration::from_millis(100)).await?;
        assert_eq!(member.assignment(), vec![0, 1, 2]);
        assert_eq!(lock(&member.membership).pending, None);
        broker.stop().await;
        Ok(())
    })
    .await
}
