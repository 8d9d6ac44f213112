//! Each old partition's part in a topic growth (`metadata::split`), taken by its leader on
//! every controller tick: write the split marker if the log lacks it (a partition nobody
//! writes to must still split), then report the point the marker landed at.

use std::sync::Arc;

use steme_protocol::messages::metadata::SplitPoint;

use super::Broker;
use crate::metadata::Command;

impl Broker {
    /// Moves every pending split point this broker leads one step on.
    pub(super) async fn step_splits(self: &Arc<Self>) {
        let state = self.metadata();
        let me = self.cfg.node_id;
        for (topic, partition, epoch) in state.pending_splits(me) {
            let Ok(p) = self.partition(topic, partition) else {
                continue;
            };
            if p.leader().0 != Some(me) {
                continue;
            }
            match p.split_mark() {
                Some(mark) if mark.epoch == epoch => {
                    let cmd = Command::RecordSplit {
                        topic: topic.to_owned(),
                        partition,
                        epoch,
                        point: SplitPoint {
                            offset: mark.offset,
                            hlc: mark.hlc,
                        },
                    };
                    match self.propose_metadata(cmd).await {
                        Ok(()) => {
                            tracing::info!(%topic, partition, epoch, offset = mark.offset, "split point recorded")
                        }
                        Err(e) => {
                            tracing::info!(%topic, partition, epoch, error = %e, "split point not yet recorded")
                        }
                    }
                }
                _ => {
                    if let Some(t) = state.topics.get(topic) {
                        p.mark_split(t.map_of(partition));
                    }
                }
            }
        }
    }
}
