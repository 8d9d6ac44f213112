//! The indexer: a consumer-group member that builds a subject index — for each subject, the
//! ids of its current assertions, superseded ones removed — in redb, an embedded database.
//!
//! Run several copies with the same group and directory: they split the topic's partitions,
//! and when one dies the others take its partitions over. Each partition has its own
//! database file (`partition-<n>.redb`), opened only by the member that owns the partition
//! and closed when the partition is taken away, before the member reports it released.
//!
//! Records are applied in one write transaction per partition per poll, durable when it
//! commits; offsets are committed to the group only after that. A member that dies between
//! the two leaves its successor to apply some records again — so every write is idempotent:
//! the index is a set of (subject, id) pairs, and supersession is remembered (old id → new
//! id), so a superseded assertion applied again, or late, stays out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition,
};
use steme_client::{GroupConfig, GroupConsumer, Rebalance, Record};

/// subject → ids (hex) of its assertions that nothing supersedes.
const BY_SUBJECT: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("by_subject");
/// superseded id → the id that superseded it.
const SUPERSEDED: TableDefinition<&str, &str> = TableDefinition::new("superseded");
/// "next_offset" → the partition's next offset to apply (for operators; the group's
/// committed offset decides where a member starts).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How an indexer runs.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// Where the partition databases live (shared by every copy on this machine).
    pub dir: PathBuf,
    /// Keep running; otherwise stop after `idle` without records.
    pub follow: bool,
    pub idle: Duration,
    pub session_timeout: Duration,
    pub instance_id: Option<String>,
}

fn db_path(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("partition-{partition}.redb"))
}

/// Applies `records` (of one partition, in offset order) in one durable transaction.
fn apply(db: &Database, records: &[Record]) -> anyhow::Result<()> {
    let txn = db.begin_write()?;
    {
        let mut by_subject = txn.open_multimap_table(BY_SUBJECT)?;
        let mut superseded = txn.open_table(SUPERSEDED)?;
        let mut meta = txn.open_table(META)?;
        for r in records {
            let a = r.assertion()?;
            let id = r.id().to_hex();
            if let Some(old) = a.supersedes {
                let old = old.to_hex();
                superseded.insert(old.as_str(), id.as_str())?;
                by_subject.remove(a.subject.as_str(), old.as_str())?;
            }
            if superseded.get(id.as_str())?.is_none() {
                by_subject.insert(a.subject.as_str(), id.as_str())?;
            }
            meta.insert("next_offset", r.offset() + 1)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Runs one indexer until `stop` completes, it is idle (without `follow`), or it fails; then
/// it commits and leaves the group. Returns how many records it applied.
pub async fn run_indexer(
    cfg: IndexerConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    tokio::pin!(stop);
    std::fs::create_dir_all(&cfg.dir)
        .with_context(|| format!("cannot create {}", cfg.dir.display()))?;
    let mut config = GroupConfig::new(&cfg.group);
    config.session_timeout = cfg.session_timeout;
    config.instance_id = cfg.instance_id.clone();
    // Offsets are committed by hand, after the index is durable.
    config.auto_commit = None;
    let mut member = GroupConsumer::join(&cfg.bootstrap, &cfg.topic, config)
        .await
        .map_err(|e| crate::explain(&cfg.bootstrap, e))?;
    // Open databases by partition; a revoked partition's is closed before its release.
    let dbs: Arc<Mutex<HashMap<u32, Arc<Database>>>> = Arc::default();
    let closing = dbs.clone();
    member.on_rebalance(move |event| {
        if let Rebalance::Revoked(ps) = event {
            let mut open = closing.lock().unwrap_or_else(|p| p.into_inner());
            for p in ps {
                open.remove(p);
            }
        }
    });
    let mut applied = 0u64;
    let mut quiet = tokio::time::Instant::now();
    loop {
        let records = tokio::select! {
            _ = &mut stop => break,
            r = member.poll(Duration::from_millis(250)) => r?,
        };
        if records.is_empty() {
            if !cfg.follow && quiet.elapsed() >= cfg.idle {
                break;
            }
            continue;
        }
        quiet = tokio::time::Instant::now();
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition.entry(r.partition()).or_default().push(r);
        }
        for (p, records) in by_partition {
            let db = {
                let mut open = dbs.lock().unwrap_or_else(|e| e.into_inner());
                match open.get(&p) {
                    Some(db) => db.clone(),
                    None => {
                        let path = db_path(&cfg.dir, p);
                        let db = Arc::new(
                            Database::create(&path)
                                .with_context(|| format!("cannot open {}", path.display()))?,
                        );
                        open.insert(p, db.clone());
                        db
                    }
                }
            };
            tokio::task::block_in_place(|| apply(&db, &records))?;
            applied += records.len() as u64;
        }
        // The index is durable: now the offsets.
        if let Err(e) = member.commit().await {
            eprintln!("indexer: commit failed (the records will be applied again): {e}");
        }
    }
    member.close().await?;
    Ok(applied)
}

/// The whole index, read from every partition database under `dir`.
pub fn read_index(dir: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "redb") {
            continue;
        }
        let db =
            Database::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let txn = db.begin_read()?;
        let table = match txn.open_multimap_table(BY_SUBJECT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        for item in table.iter()? {
            let (subject, ids) = item?;
            let set = out.entry(subject.value().to_owned()).or_default();
            for id in ids {
                set.insert(id?.value().to_owned());
            }
        }
    }
    Ok(out)
}
