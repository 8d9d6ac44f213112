//! Waiting on the metadata: `partition reassign --wait` and `cluster decommission` read it
//! every [`POLL_INTERVAL`] until what they wait for is there, telling the operator on
//! stderr how far it got.

use std::time::Duration;

use anyhow::Context;
use steme_client::Admin;
use steme_client::admin::MetadataResponse;
use tokio::time::Instant;

/// How often the metadata is read while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A progress line is repeated this often even when nothing changed, so a long wait shows
/// it is alive.
const REPEAT_PROGRESS: Duration = Duration::from_secs(10);

/// What one look at the metadata found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Done.
    Done,
    /// Not yet: how far it got, in one line.
    Waiting(String),
}

/// Reads the metadata of `topics` (`None` = every topic) until `look` finds it done, for at
/// most `timeout`. Progress goes to stderr when it changes (and every 10 s). A metadata
/// read that fails (a metadata leader being elected, say) is reported and tried again; an
/// error from `look` ends the wait. Returns how long it waited; on timeout the error names
/// `what` and the last progress.
pub async fn watch(
    admin: &Admin,
    topics: Option<&[String]>,
    timeout: Duration,
    what: &str,
    mut look: impl FnMut(&MetadataResponse) -> anyhow::Result<Step>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last: Option<(String, Instant)> = None;
    loop {
        let progress = match admin.leader_metadata(topics).await {
            Ok(meta) => match look(&meta)? {
                Step::Done => return Ok(start.elapsed()),
                Step::Waiting(progress) => progress,
            },
            Err(e) => format!("cannot read metadata ({e}); trying again"),
        };
        let now = Instant::now();
        let repeat = match &last {
            Some((said, at)) => *said != progress || now.duration_since(*at) >= REPEAT_PROGRESS,
            None => true,
        };
        if repeat {
            eprintln!("[{}s] {progress}", start.elapsed().as_secs());
            last = Some((progress, now));
        }
        if now >= deadline {
            let seen = last.map(|(said, _)| said).unwrap_or_default();
            return Err(anyhow::anyhow!("last seen: {seen}"))
                .with_context(|| format!("{what}: not done after {}s", timeout.as_secs()));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
