//! `steme cluster rebalance`: spreads replicas, then preferred leaders, evenly over the
//! active brokers. [`plan`] is a pure function of the active brokers and the partitions'
//! replica lists; the command reads the metadata, plans, and sends one ReassignPartition per
//! partition to change (or, with `--dry-run`, prints the plan).
//!
//! The plan, in order of its goals:
//! 1. Replica counts: every active broker holds within one replica of every other. A
//!    replica moves from the most loaded broker to the least loaded one that does not hold
//!    that partition yet, taking its place in the list (so a moved first replica hands the
//!    preferred leadership to the new broker), until no broker holds two more than another.
//! 2. Preferred leaders (the first replica): every active broker leads within one partition
//!    of every other where the replica lists allow it, by reordering replicas within
//!    partitions, which moves no data. A lead passes along a chain of partitions (broker a
//!    hands one to b, b one to c) from a broker that leads too many to one that leads two
//!    fewer; when no such chain is left the spread is the narrowest the lists allow.
//! 3. Few changes: each step in 1 moves one replica and strictly narrows the spread, and
//!    step 2 moves none.
//!
//! Partitions with a replica on a broker that is not active are left alone (a draining
//! broker's replicas are moved by the cluster), though their replicas on active brokers
//! count toward those brokers' load. Moving partitions are not given to the planner.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;
use steme_client::Admin;
use steme_client::admin::{BrokerState, MetadataResponse};

use crate::args::RebalanceArgs;
use crate::output::{ids, json_line};

/// One partition and where its replicas are, the preferred leader first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<u64>,
}

/// One partition's change: its replica list before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub topic: String,
    pub partition: u32,
    pub from: Vec<u64>,
    pub to: Vec<u64>,
}

impl Move {
    /// The brokers that get a new replica (its data is copied to them).
    pub fn added(&self) -> Vec<u64> {
        self.to
            .iter()
            .copied()
            .filter(|id| !self.from.contains(id))
            .collect()
    }

    /// The brokers whose replica goes away.
    pub fn removed(&self) -> Vec<u64> {
        self.from
            .iter()
            .copied()
            .filter(|id| !self.to.contains(id))
            .collect()
    }
}

/// The moves that balance replicas and preferred leaders over `active`, sorted by topic and
/// partition; empty when already balanced. See the module documentation for the goals.
pub fn plan(active: &[u64], partitions: &[Placement]) -> Vec<Move> {
    let active: BTreeSet<u64> = active.iter().copied().collect();
    let mut parts = partitions.to_vec();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let before = parts.clone();
    let movable: Vec<bool> = parts
        .iter()
        .map(|p| {
            let distinct: BTreeSet<u64> = p.replicas.iter().copied().collect();
            !p.replicas.is_empty()
                && distinct.len() == p.replicas.len()
                && distinct.is_subset(&active)
        })
        .collect();
    balance_replicas(&active, &mut parts, &movable);
    balance_leaders(&active, &mut parts, &movable);
    before
        .into_iter()
        .zip(parts)
        .filter(|(b, a)| b.replicas != a.replicas)
        .map(|(b, a)| Move {
            topic: b.topic,
            partition: b.partition,
            from: b.replicas,
            to: a.replicas,
        })
        .collect()
}

/// How many replicas (`leaders` false) or first replicas (`leaders` true) each active
/// broker holds.
fn counts(active: &BTreeSet<u64>, parts: &[Placement], leaders: bool) -> BTreeMap<u64, usize> {
    let mut n: BTreeMap<u64, usize> = active.iter().map(|&b| (b, 0)).collect();
    for p in parts {
        let held = if leaders {
            &p.replicas[..p.replicas.len().min(1)]
        } else {
            &p.replicas[..]
        };
        for b in held {
            if let Some(c) = n.get_mut(b) {
                *c += 1;
            }
        }
    }
    n
}

/// Brokers by count: the most first (`descending`) or the fewest first; ties by id.
fn by_count(n: &BTreeMap<u64, usize>, descending: bool) -> Vec<(u64, usize)> {
    let mut v: Vec<(u64, usize)> = n.iter().map(|(&b, &c)| (b, c)).collect();
    if descending {
        v.sort_by_key(|&(b, c)| (std::cmp::Reverse(c), b));
    } else {
        v.sort_by_key(|&(b, c)| (c, b));
    }
    v
}

/// Goal 1: moves replicas from the most to the least loaded brokers until every active
/// broker holds within one of every other (or no movable replica can narrow it further).
fn balance_replicas(active: &BTreeSet<u64>, parts: &mut [Placement], movable: &[bool]) {
    let mut load = counts(active, parts, false);
    let mut leads = counts(active, parts, true);
    'narrow: loop {
        let fewest = by_count(&load, false);
        for (src, src_n) in by_count(&load, true) {
            for &(dst, dst_n) in &fewest {
                if src_n < dst_n + 2 {
                    // The rest hold even more.
                    break;
                }
                let Some((i, slot)) = replica_to_move(parts, movable, &leads, src, dst) else {
                    continue;
                };
                parts[i].replicas[slot] = dst;
                *load.entry(src).or_default() -= 1;
                *load.entry(dst).or_default() += 1;
                if slot == 0 {
                    *leads.entry(src).or_default() -= 1;
                    *leads.entry(dst).or_default() += 1;
                }
                continue 'narrow;
            }
        }
        break;
    }
}

/// A movable partition with a replica on `src` and none on `dst`: its index and the slot of
/// `src`. Moving a first replica hands the preferred leadership to `dst`, so one is chosen
/// when `src` leads at least two more partitions than `dst`, and otherwise a follower
/// replica; either kind if only one is there.
fn replica_to_move(
    parts: &[Placement],
    movable: &[bool],
    leads: &BTreeMap<u64, usize>,
    src: u64,
    dst: u64,
) -> Option<(usize, usize)> {
    let count = |b: u64| leads.get(&b).copied().unwrap_or(0);
    let move_a_lead = count(src) >= count(dst) + 2;
    let mut other_kind = None;
    for (i, p) in parts.iter().enumerate() {
        if !movable[i] || p.replicas.contains(&dst) {
            continue;
        }
        let Some(slot) = p.replicas.iter().position(|&b| b == src) else {
            continue;
        };
        if (slot == 0) == move_a_lead {
            return Some((i, slot));
        }
        other_kind.get_or_insert((i, slot));
    }
    other_kind
}

/// Goal 2: reorders replicas within movable partitions until no chain of reorders can take
/// a lead from a broker to one leading two fewer.
fn balance_leaders(active: &BTreeSet<u64>, parts: &mut [Placement], movable: &[bool]) {
    while let Some(chain) = lead_chain(&counts(active, parts, true), parts, movable) {
        for (i, to) in chain {
            if let Some(slot) = parts[i].replicas.iter().position(|&b| b == to) {
                parts[i].replicas.swap(0, slot);
            }
        }
    }
}

/// A chain of reorders, as (partition index, new first replica): the first broker of the
/// chain leads one partition fewer, the last one more, those between as many as before.
/// The first leads the most partitions it can give away; the last, reached through the
/// partitions each broker on the way leads and another replica of it, the fewest, and at
/// least two fewer than the first.
fn lead_chain(
    leads: &BTreeMap<u64, usize>,
    parts: &[Placement],
    movable: &[bool],
) -> Option<Vec<(usize, u64)>> {
    // The partitions each broker leads and could hand to another replica.
    let mut led: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        if movable[i] && p.replicas.len() >= 2 {
            led.entry(p.replicas[0]).or_default().push(i);
        }
    }
    for (src, src_n) in by_count(leads, true) {
        // Breadth first, so that the chain to each broker is as short as it can be.
        let mut reached_by: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        let mut queue = VecDeque::from([src]);
        while let Some(b) = queue.pop_front() {
            for &i in led.get(&b).map(Vec::as_slice).unwrap_or_default() {
                for &next in &parts[i].replicas[1..] {
                    if next != src && !reached_by.contains_key(&next) {
                        reached_by.insert(next, (b, i));
                        queue.push_back(next);
                    }
                }
            }
        }
        let dst = reached_by
            .keys()
            .copied()
            .filter_map(|b| leads.get(&b).map(|&n| (n, b)))
            .filter(|&(n, _)| n + 2 <= src_n)
            .min();
        let Some((_, dst)) = dst else {
            continue;
        };
        let mut chain = Vec::new();
        let mut at = dst;
        while at != src {
            let (from, i) = reached_by[&at];
            chain.push((i, at));
            at = from;
        }
        return Some(chain);
    }
    None
}

/// The active brokers, and the partitions that are not moving, of `meta`.
fn inputs(meta: &MetadataResponse) -> (Vec<u64>, Vec<Placement>) {
    let active = meta
        .brokers
        .iter()
        .filter(|b| b.state == BrokerState::Active)
        .map(|b| b.node_id)
        .collect();
    let placements = meta
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.target.is_none())
                .map(|p| Placement {
                    topic: t.name.clone(),
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                })
        })
        .collect();
    (active, placements)
}

pub async fn run(bootstrap: &str, a: RebalanceArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap, crate::client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    // As the metadata leader has it: another broker may trail it (a broker that just
    // joined may not yet see anyone active), and a plan from a stale view moves wrongly.
    let meta = admin
        .leader_metadata(None)
        .await
        .context("cannot read metadata")?;
    let (active, placements) = inputs(&meta);
    if active.is_empty() {
        anyhow::bail!("no active broker to place replicas on");
    }
    let moves = plan(&active, &placements);
    if a.dry_run {
        if a.json {
            for m in &moves {
                json_line(m)?;
            }
        } else {
            print!("{}", render(&moves));
        }
        return Ok(());
    }
    let mut refused = 0;
    for m in &moves {
        let name = format!("{}/{}", m.topic, m.partition);
        let answer = admin
            .reassign_partition(&m.topic, m.partition, m.to.clone())
            .await;
        match (&answer, a.json) {
            (Ok(r), true) => json_line(&serde_json::json!({
                "topic": m.topic,
                "partition": m.partition,
                "from": m.from,
                "to": m.to,
                "replicas": r.replicas,
                "target": r.target,
            }))?,
            (Ok(r), false) => println!(
                "{name}: {} → {}: recorded{}",
                ids(&m.from),
                ids(&m.to),
                if r.target.is_some() { ", moving" } else { "" }
            ),
            (Err(e), true) => json_line(&serde_json::json!({
                "topic": m.topic,
                "partition": m.partition,
                "from": m.from,
                "to": m.to,
                "error": e.to_string(),
            }))?,
            (Err(e), false) => println!("{name}: {} → {}: refused: {e}", ids(&m.from), ids(&m.to)),
        }
        if answer.is_err() {
            refused += 1;
        }
    }
    if moves.is_empty() {
        if !a.json {
            println!("balanced: nothing to move");
        }
    } else {
        eprintln!(
            "sent {} reassignment(s); the partitions' leaders carry them out in the background: \
             watch `steme cluster status`",
            moves.len() - refused
        );
    }
    if refused > 0 {
        anyhow::bail!("{refused} of {} reassignment(s) refused", moves.len());
    }
    Ok(())
}

/// The plan as a table and a summary line.
fn render(moves: &[Move]) -> String {
    if moves.is_empty() {
        return "balanced: nothing to move\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:<20} {:<20} CHANGE",
        "TOPIC", "PARTITION", "FROM", "TO"
    );
    let mut copies = 0;
    for m in moves {
        let (added, removed) = (m.added(), m.removed());
        copies += added.len();
        let change = if added.is_empty() {
            format!("reorder: preferred leader {}", m.to[0])
        } else {
            format!("move {} → {}", ids(&removed), ids(&added))
        };
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:<20} {:<20} {change}",
            m.topic,
            m.partition,
            ids(&m.from),
            ids(&m.to)
        );
    }
    let _ = writeln!(
        out,
        "{} partition(s) to change, {copies} replica(s) to copy; nothing sent (--dry-run)",
        moves.len()
    );
    out
}

#[cfg(test)]
mod tests;
