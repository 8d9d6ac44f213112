//! The HTTP gateway (`steme-gateway`, client/gateway/GATEWAY.md) in front of a real
//! 3-broker cluster, every process on loopback: posts of signed assertions (curl as a
//! README reader would, JSON arrays and JSON lines), acks in input order and duplicates
//! seen through a second gateway, a bad record refusing the whole post, reads by offset
//! and by time, Server-Sent Events resumed with `Last-Event-ID`, a partition leader killed
//! with SIGKILL mid-load without losing an acknowledged record, the size limits, the 429
//! of a produce quota, and principals (bearer tokens mapped to broker keys and their ACLs).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::slice::from_ref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use hyper::StatusCode;
use steme_client::connection::{AuthKey, ConnectionConfig};
use steme_client::json::AckLine;
use steme_client::json::time::Stamp;
use steme_client::keys::{Existing, save_signing_key};
use steme_client::{Admin, Assertion, ClientConfig, SignedAssertion};
use steme_protocol::acl::Acl;
use steme_protocol::messages::authenticate::key_principal;
use steme_tests::gateway::{
    EventStream, GatewayProcess, GatewaySetup as Setup, PARTITIONS, Principal, Reply, SseEvent,
    ack_of, acks_of, check_acks, curl, get, json_array, json_lines, post, post_until_stored,
    read_partition, signed_for, signed_of_record,
};
use steme_tests::workload::{
    check_acks_present, check_log, high_watermarks, key, read_topic, sign_all, signed,
};
use steme_tests::{eventually, unique, within};

const T: Duration = Duration::from_secs(30);
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// Posts `records` through the gateway at `addr`, as a JSON array or as JSON lines; the
/// acks of a 200 answer.
async fn post_acks(
    addr: SocketAddr,
    path: &str,
    records: &[SignedAssertion],
    array: bool,
) -> anyhow::Result<Vec<AckLine>> {
    let (content_type, body) = if array {
        (JSON, json_array(records)?)
    } else {
        (NDJSON, json_lines(records)?)
    };
    acks_of(&post(addr, path, content_type, body, &[]).await?, array)
}

/// `GET path`, which must be answered 200.
async fn get_ok(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    get(addr, path, &[]).await?.expect(StatusCode::OK)
}

/// Checks that `reply` has header `name` with value `want`.
fn expect_header(reply: &Reply, name: &str, want: u64) -> anyhow::Result<()> {
    let got = reply.header_u64(name)?;
    ensure!(
        got == want,
        "{name}: {got}, expected {want}; {:?}",
        reply.headers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_posts_a_signed_file_and_reads_the_record_back() -> anyhow::Result<()> {
    let s = Setup::plain(1).await?;
    let r = within(Duration::from_secs(60), async {
        let signed = Assertion::builder(format!("urn:person:{}", unique("ada")), "born")
            .object(1815)
            .source("wikipedia")
            .confidence(0.99)
            .issued_at(1_700_000_000_000)
            .build()?
            .sign(&key(7))?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("ada.json");
        std::fs::write(&file, serde_json::to_vec(&signed)?)?;
        let url = format!("{}{}", s.gateways[0].url(), s.path("/assertions"));
        let at = format!("@{}", file.display());
        let ct = "content-type: application/json";
        let args = [
            "-sS",
            "--fail-with-body",
            "--data-binary",
            &at,
            "-H",
            ct,
            &url,
        ];
        let out = curl(&args, T).await?.stdout;
        let ack: AckLine =
            serde_json::from_str(out.trim()).with_context(|| format!("not one ack: {:?}", out))?;
        check_acks(from_ref(&signed), from_ref(&ack), Some(false))?;

        let query = format!("from={}&max=1", ack.offset);
        let url = format!(
            "{}{}",
            s.gateways[0].url(),
            s.records_path(ack.partition, &query)
        );
        let out = curl(&["-sS", "--fail-with-body", &url], T).await?.stdout;
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        ensure!(lines.len() == 1, "expected one record: {:?}", out);
        let record: serde_json::Value = serde_json::from_str(lines[0])?;
        ensure!(record["partition"] == ack.partition && record["offset"] == ack.offset);
        let stamp: Stamp = serde_json::from_value(record.clone())?;
        ensure!(stamp == ack.stamp, "{record} vs {ack:?}");
        let back = signed_of_record(&record)?;
        ensure!(back == signed, "read back {back:?}, posted {signed:?}");
        ensure!(record["signature"] == serde_json::to_value(&signed)?["signature"]);
        Ok(())
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_follow_input_order_and_another_gateway_answers_duplicates() -> anyhow::Result<()> {
    let s = Setup::plain(2).await?;
    let r = within(Duration::from_secs(60), async {
        let records = signed(&unique("order"), 60, 200)?;
        let (array, lines) = records.split_at(30);
        let path = s.path("/assertions");
        let first_a = post_acks(s.gw(0), &path, array, true).await?;
        check_acks(array, &first_a, Some(false))?;
        let first_l = post_acks(s.gw(0), &path, lines, false).await?;
        check_acks(lines, &first_l, Some(false))?;
        let all: HashSet<(u32, u64)> = first_a
            .iter()
            .chain(&first_l)
            .map(|a| (a.partition, a.offset))
            .collect();
        ensure!(all.len() == records.len(), "two posts' acks share a place");

        // The same bodies through the other gateway: all duplicates, at the first places.
        let again_a = post_acks(s.gw(1), &path, array, true).await?;
        let again_l = post_acks(s.gw(1), &path, lines, false).await?;
        for (first, again) in [(&first_a, &again_a), (&first_l, &again_l)] {
            ensure!(
                first.len() == again.len(),
                "{} acks, then {}",
                first.len(),
                again.len()
            );
            for (f, a) in first.iter().zip(again.iter()) {
                ensure!(
                    a.duplicate,
                    "posted again, {} was stored again: {a:?}",
                    a.id
                );
                ensure!(
                    (f.id, f.partition, f.offset, &f.stamp)
                        == (a.id, a.partition, a.offset, &a.stamp),
                    "the duplicate's ack {a:?} differs from the first {f:?}"
                );
            }
        }
        // Records as read (their place fields too) post again as they stand: duplicates.
        let read = read_partition(s.gw(1), &s.topic, 0, 100).await?;
        let body: Vec<u8> = read
            .iter()
            .flat_map(|r| format!("{r}\n").into_bytes())
            .collect();
        let reply = post(s.gw(0), &path, NDJSON, body, &[]).await?;
        let again = acks_of(&reply, false)?;
        ensure!(again.len() == read.len() && !read.is_empty(), "{reply}");
        for (a, r) in again.iter().zip(&read) {
            ensure!(a.duplicate && r["offset"] == a.offset, "{a:?} for {r}");
        }
        let hwms = high_watermarks(&s.cluster.bootstrap(), &s.topic).await?;
        ensure!(hwms.iter().sum::<u64>() == records.len() as u64, "{hwms:?}");
        Ok(())
    })
    .await;
    s.explain(r)
}

/// `value`'s `field` (hex) with one digit changed.
fn flip_hex(value: &mut serde_json::Value, field: &str) -> anyhow::Result<()> {
    let text = value[field].as_str().context("no hex field")?;
    let mut chars: Vec<char> = text.chars().collect();
    chars[10] = if chars[10] == '0' { '1' } else { '0' };
    value[field] = serde_json::Value::String(chars.into_iter().collect());
    Ok(())
}

/// The indexes a 400 `invalid_records` answer names.
fn bad_indexes(reply: &Reply) -> anyhow::Result<Vec<u64>> {
    let v = reply.expect_error(StatusCode::BAD_REQUEST)?;
    ensure!(v["error"]["code"] == "invalid_records", "{reply}");
    let named = v["records"]
        .as_array()
        .with_context(|| format!("no records[]: {reply}"))?;
    named
        .iter()
        .map(|r| {
            ensure!(r["error"].is_string(), "no error text for {r}");
            r["index"]
                .as_u64()
                .with_context(|| format!("no index in {r}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_record_refuses_the_whole_post_and_stores_nothing() -> anyhow::Result<()> {
    let s = Setup::plain(1).await?;
    let r = within(Duration::from_secs(60), async {
        let records = signed(&unique("bad"), 5, 150)?;
        let path = s.path("/assertions");
        let mut values: Vec<serde_json::Value> = records
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        let pristine = values.clone();
        flip_hex(&mut values[2], "signature")?;
        let reply = post(s.gw(0), &path, JSON, serde_json::to_vec(&values)?, &[]).await?;
        ensure!(bad_indexes(&reply)? == [2], "{reply}");

        // Two bad ones, as JSON lines: a field changed under its id, and a bad signature.
        let mut values = pristine;
        values[1]["predicate"] = "e2e:changed".into();
        flip_hex(&mut values[3], "signature")?;
        let body: Vec<u8> = values
            .iter()
            .flat_map(|v| format!("{v}\n").into_bytes())
            .collect();
        let two_bad = post(s.gw(0), &path, NDJSON, body, &[]).await?;

        // Nothing of either post is stored (checked before what the second one named).
        let log = read_topic(&s.cluster.bootstrap(), &s.topic, T).await?;
        let ids: HashSet<_> = records.iter().map(SignedAssertion::id).collect();
        for r in log.values().flatten() {
            let id = r.id();
            ensure!(!ids.contains(&id), "{id} of a refused post is stored");
        }
        ensure!(log.values().all(Vec::is_empty), "the topic is not empty");
        ensure!(bad_indexes(&two_bad)? == [1, 3], "{two_bad}");
        // The good records alone are stored.
        let good = [records[0].clone(), records[4].clone()];
        let acks = post_acks(s.gw(0), &path, &good, true).await?;
        check_acks(&good, &acks, Some(false))
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_offset_and_by_time_page_with_next_offset() -> anyhow::Result<()> {
    let s = Setup::plain(1).await?;
    let r = within(Duration::from_secs(60), async {
        let records = signed_for(&unique("reads"), 0, 12, 150)?;
        let path = s.path("/assertions");
        let mut acks = Vec::new();
        for half in records.chunks(6) {
            acks.extend(post_acks(s.gw(0), &path, half, true).await?);
        }
        check_acks(&records, &acks, Some(false))?;
        let base = acks[0].offset;

        // By offset, `max` honoured, the headers saying where to go on.
        let reply = get(
            s.gw(0),
            &s.records_path(0, &format!("from={}&max=4", base + 1)),
            &[],
        )
        .await?
        .expect(StatusCode::OK)?;
        let got = reply.json_lines()?;
        let offsets: Vec<u64> = got.iter().filter_map(|r| r["offset"].as_u64()).collect();
        ensure!(
            offsets == [base + 1, base + 2, base + 3, base + 4],
            "{reply}"
        );
        for (r, a) in got.iter().zip(&acks[1..]) {
            ensure!(
                signed_of_record(r)?.id() == a.id && r["hlc"] == a.stamp.hlc,
                "{r}"
            );
        }
        expect_header(&reply, "steme-next-offset", base + 5)?;
        expect_header(&reply, "steme-high-watermark", base + 12)?;
        // Paging from `earliest` (the default) reads the partition whole.
        let whole = read_partition(s.gw(0), &s.topic, 0, 5).await?;
        let ids: Vec<String> = whole.iter().map(|r| r["id"].to_string()).collect();
        let want: Vec<String> = acks.iter().map(|a| format!("\"{}\"", a.id)).collect();
        ensure!(ids == want, "read {ids:?}, acknowledged {want:?}");
        // `latest`: nothing yet, and where the next record will be.
        let reply = get_ok(s.gw(0), &s.records_path(0, "from=latest")).await?;
        ensure!(reply.json_lines()?.is_empty(), "{reply}");
        expect_header(&reply, "steme-next-offset", base + 12)?;

        // By time: the second post's first record is the first stamped at or after its time.
        let query = format!("from=time:{}&max=2", acks[6].stamp.time);
        let reply = get_ok(s.gw(0), &s.records_path(0, &query)).await?;
        let got = reply.json_lines()?;
        ensure!(
            got.len() == 2 && got[0]["offset"] == acks[6].offset,
            "{query}: {reply}"
        );
        // The same instant as a raw HLC and with a `+00:00` offset (URL-encoded); an hour
        // ago finds the first record.
        let utc = acks[6].stamp.time.replace('Z', "%2B00:00");
        for (from, want) in [
            (acks[6].stamp.hlc.to_string(), &acks[6]),
            (utc, &acks[6]),
            ("-1h".to_owned(), &acks[0]),
        ] {
            let query = format!("from=time:{from}&max=1");
            let reply = get_ok(s.gw(0), &s.records_path(0, &query)).await?;
            let first = reply.json_lines()?.into_iter().next();
            ensure!(
                first.is_some_and(|r| r["offset"] == want.offset),
                "{query}: {reply}"
            );
        }

        // The topic list and the topic.
        let list = get_ok(s.gw(0), "/v1/topics").await?.json()?;
        let mine = list["topics"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == s.topic.as_str()))
            .with_context(|| format!("{} not listed: {list}", s.topic))?;
        ensure!(
            mine["partitions"] == PARTITIONS && mine["replication_factor"] == 3,
            "{mine}"
        );
        let topic = get_ok(s.gw(0), &s.path("")).await?.json()?;
        ensure!(
            topic["name"] == s.topic.as_str() && topic["map_epoch"].is_u64(),
            "{topic}"
        );
        let parts = topic["partitions"]
            .as_array()
            .with_context(|| format!("{topic}"))?;
        ensure!(parts.len() == PARTITIONS as usize, "{topic}");
        for p in parts {
            ensure!(p["leader"].is_u64() && p["log_start"] == 0, "{p}");
            ensure!(
                p["replicas"].as_array().is_some_and(|r| r.len() == 3),
                "{p}"
            );
        }
        ensure!(parts[0]["high_watermark"] == base + 12, "{topic}");

        // Errors: JSON, with the right status.
        let unknown = unique("nope");
        for (path, want) in [
            (format!("/v1/topics/{unknown}"), StatusCode::NOT_FOUND),
            (
                format!("/v1/topics/{unknown}/partitions/0/records"),
                StatusCode::NOT_FOUND,
            ),
            (s.records_path(PARTITIONS + 4, ""), StatusCode::NOT_FOUND),
            (s.records_path(0, "from=soon"), StatusCode::BAD_REQUEST),
            ("/v1/nothing-here".to_owned(), StatusCode::NOT_FOUND),
        ] {
            let reply = get(s.gw(0), &path, &[]).await?;
            reply
                .expect_error(want)
                .with_context(|| format!("GET {path}"))?;
        }
        let to_unknown = format!("/v1/topics/{unknown}/assertions");
        let reply = post(s.gw(0), &to_unknown, JSON, json_array(&records[..1])?, &[]).await?;
        reply
            .expect_error(StatusCode::NOT_FOUND)
            .context("an unknown topic")?;
        Ok(())
    })
    .await;
    s.explain(r)
}

/// Checks that `event` is the record `ack` names.
fn check_event(event: &SseEvent, ack: &AckLine) -> anyhow::Result<()> {
    ensure!(
        event.id.as_deref() == Some(ack.offset.to_string().as_str()),
        "{event:?} for {ack:?}"
    );
    ensure!(event.event.as_deref() == Some("record"), "{event:?}");
    let record: serde_json::Value = serde_json::from_str(&event.data)?;
    ensure!(
        record["offset"] == ack.offset && record["partition"] == ack.partition,
        "{record}"
    );
    ensure!(
        signed_of_record(&record)?.id() == ack.id,
        "{record} for {ack:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_new_records_and_resumes_after_last_event_id() -> anyhow::Result<()> {
    let s = Setup::plain(1).await?;
    let r = within(Duration::from_secs(60), async {
        let records = signed_for(&unique("sse"), 0, 4, 150)?;
        let path = s.path("/assertions");
        let post_one = |r| post_acks(s.gw(0), &path, from_ref(r), true);
        // Something before the stream opens, which `from=latest` (the default) skips.
        post_one(&records[0]).await?;
        let stream_path = s.path("/partitions/0/stream");
        let mut stream = EventStream::connect(s.gw(0), &stream_path, None, T).await?;
        let first = post_one(&records[1]).await?.remove(0);
        check_event(&stream.next(T).await?, &first)?;
        drop(stream);

        let mut later = Vec::new();
        for r in &records[2..] {
            later.push(post_one(r).await?.remove(0));
        }
        // `Last-Event-ID` wins over `from`.
        let resume = s.path("/partitions/0/stream?from=earliest");
        let mut stream = EventStream::connect(s.gw(0), &resume, Some(first.offset), T).await?;
        for ack in &later {
            check_event(&stream.next(T).await?, ack)?;
        }
        let extra = stream.next_within(Duration::from_secs(1)).await?;
        ensure!(
            extra.is_none(),
            "an event past the records posted: {extra:?}"
        );
        Ok(())
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_survive_a_partition_leader_killed_mid_load() -> anyhow::Result<()> {
    const POSTS: usize = 40;
    const PER_POST: usize = 50;
    let records = signed(&unique("kill"), POSTS * PER_POST, 200)?;
    let more = signed(&unique("kill-gw"), 10_000, 200)?;
    let mut s = Setup::plain(2).await?;
    let r = within(Duration::from_secs(150), async {
        let bodies: Vec<Vec<u8>> = records
            .chunks(PER_POST)
            .map(json_array)
            .collect::<Result<_, _>>()?;
        let done = Arc::new(AtomicUsize::new(0));
        let (addr, path, progress) = (s.gw(0), s.path("/assertions"), done.clone());
        let poster = tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut retried = 0;
            for body in &bodies {
                let (a, r) = post_until_stored(addr, &path, body, 60).await?;
                acks.extend(a);
                retried += r;
                progress.fetch_add(1, Ordering::Release);
            }
            anyhow::Ok((acks, retried))
        });
        eventually(T, "a quarter of the posts answered", || {
            let n = done.load(Ordering::Acquire);
            async move { Ok(n >= POSTS / 4) }
        })
        .await?;
        let victim = s.cluster.wait_for_leader(&s.topic, 0, None, T).await?;
        s.cluster.broker_mut(victim).kill9()?;
        eprintln!("killed broker {victim}, the leader of partition 0");
        let (acks, retried) = poster.await.context("the posting task panicked")??;
        eprintln!(
            "{} posts answered, {retried} answers were retried",
            done.load(Ordering::Acquire)
        );
        // A batch the dead leader wrote but did not acknowledge is retried by the gateway and
        // may come back `duplicate: true`: each record is stored once, where its ack says.
        check_acks(&records, &acks, None)?;
        let again = acks.iter().filter(|a| a.duplicate).count();
        eprintln!("{again} acks were duplicates of a write the killed leader had made");

        let bootstrap = s.cluster.bootstrap();
        let log = read_topic(&bootstrap, &s.topic, T).await?;
        let index = check_log(&log)?;
        let stored = index.records;
        ensure!(stored == records.len(), "{stored} stored");
        let acks: Vec<_> = acks.iter().map(ack_of).collect();
        check_acks_present(&log, &acks)?;
        // The other gateway reads the same.
        let via_b = read_partition(s.gw(1), &s.topic, 0, 500).await?;
        let (via, direct) = (via_b.len(), log[&0].len());
        ensure!(via == direct, "{via} via B, {direct} direct");
        for (v, r) in via_b.iter().zip(&log[&0]) {
            ensure!(
                signed_of_record(v)?.id() == r.id() && v["offset"] == r.offset(),
                "{v}"
            );
        }

        // A gateway killed mid-post: the same body through the other one stores what the
        // first did not, and acknowledges what it did as duplicates; each record once.
        let stored_before: u64 = high_watermarks(&bootstrap, &s.topic).await?.iter().sum();
        let (body, path) = (json_array(&more)?, s.path("/assertions"));
        let (addr, first_try, path_a) = (s.gw(0), body.clone(), path.clone());
        let in_flight =
            tokio::spawn(async move { post(addr, &path_a, JSON, first_try, &[]).await });
        for _ in 0..1000 {
            let now: u64 = high_watermarks(&bootstrap, &s.topic).await?.iter().sum();
            if now > stored_before || in_flight.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.gateways[0].kill9()?;
        let first = in_flight.await?.map(|r| r.status);
        let (acks, _) = post_until_stored(s.gw(1), &path, &body, 20).await?;
        check_acks(&more, &acks, None)?;
        let again = acks.iter().filter(|a| a.duplicate).count();
        eprintln!("gateway killed mid-post ({first:?}); {again} records were stored by then");
        let log = read_topic(&bootstrap, &s.topic, T).await?;
        let index = check_log(&log)?;
        let stored = index.records;
        ensure!(stored == records.len() + more.len(), "{stored} stored");
        check_acks_present(&log, &acks.iter().map(ack_of).collect::<Vec<_>>())?;
        Ok(())
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_413_an_unreachable_cluster_503_a_stalled_one_504() -> anyhow::Result<()> {
    let limits: &[&str] = &["--max-body-bytes", "4096", "--max-records", "10"];
    let impatient: &[&str] = &["--request-timeout-ms", "1000"];
    let s = Setup::start(&[], ClientConfig::default(), &[limits, impatient]).await?;
    let r = within(Duration::from_secs(60), async {
        eventually(T, "/healthz answers 200", || async {
            Ok(get(s.gw(0), "/healthz", &[]).await?.status == StatusCode::OK)
        })
        .await?;
        let path = s.path("/assertions");
        // Small records, so that 11 of them fit in 4096 bytes.
        let run = unique("l");
        let small: Vec<Assertion> = (0..11)
            .map(|i| {
                Assertion::builder(format!("{run}:{i}"), "p")
                    .object(i)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let small = sign_all(&small, &key(7))?;
        let eleven = json_lines(&small)?;
        ensure!(
            eleven.len() <= 4096,
            "11 small records take {} bytes",
            eleven.len()
        );
        let reply = post(s.gw(0), &path, NDJSON, eleven, &[]).await?;
        reply
            .expect_error(StatusCode::PAYLOAD_TOO_LARGE)
            .context("11 records")?;
        let acks = post_acks(s.gw(0), &path, &small[..10], false).await?;
        check_acks(&small[..10], &acks, Some(false))?;

        let big = json_array(&signed(&run, 8, 600)?)?;
        ensure!(big.len() > 4096);
        let reply = post(s.gw(0), &path, JSON, big.clone(), &[]).await?;
        reply
            .expect_error(StatusCode::PAYLOAD_TOO_LARGE)
            .context("a big body")?;
        // The same without a length (chunked): the limit holds as the body is read.
        let dir = tempfile::tempdir()?;
        let (file, out) = (dir.path().join("big.json"), dir.path().join("answer"));
        std::fs::write(&file, &big)?;
        let (at, url) = (format!("@{}", file.display()), s.gateways[0].url() + &path);
        let chunked = [
            "-sS",
            "-o",
            out.to_str().context("UTF-8")?,
            "-w",
            "%{http_code}",
        ];
        let headers = [
            "-H",
            "transfer-encoding: chunked",
            "-H",
            "content-type: application/json",
        ];
        let args = [&chunked[..], &headers, &["--data-binary", &at, &url]].concat();
        let code = curl(&args, T).await?.stdout;
        let answer: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
        ensure!(
            code == "413" && answer["error"]["code"].is_string(),
            "chunked: {code} {answer}"
        );
        let hwms = high_watermarks(&s.cluster.bootstrap(), &s.topic).await?;
        ensure!(hwms.iter().sum::<u64>() == 10, "{hwms:?}");

        let metrics = get_ok(s.gw(0), "/metrics").await?.text();
        ensure!(
            metrics.contains("steme_gateway_requests_total"),
            "{metrics}"
        );

        // No broker reachable (nothing listens at its bootstrap address): 503, Retry-After.
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let lost = tokio::task::block_in_place(|| {
            GatewayProcess::start(&nowhere.to_string(), &["--request-timeout-ms", "5000"])
        })?;
        let r = async {
            get(lost.addr(), "/healthz", &[])
                .await?
                .expect(StatusCode::SERVICE_UNAVAILABLE)?;
            let reply = post(lost.addr(), &path, JSON, json_array(&small[..1])?, &[]).await?;
            reply.expect_error(StatusCode::SERVICE_UNAVAILABLE)?;
            ensure!(
                reply.header("retry-after").is_some(),
                "no Retry-After: {reply}"
            );
            Ok(())
        };
        lost.explain(r.await)
            .context("a gateway without a cluster")?;

        // Every broker stopped (SIGSTOP): 504 after --request-timeout-ms; the same post
        // goes through once they run again.
        let stalled = json_array(&small[10..])?;
        let ids: Vec<u64> = s.cluster.ids().collect();
        for &id in &ids {
            s.cluster.broker(id).signal(libc::SIGSTOP)?;
        }
        let reply = post(s.gw(1), &path, JSON, stalled.clone(), &[]).await;
        for &id in &ids {
            s.cluster.broker(id).signal(libc::SIGCONT)?;
        }
        reply?.expect_error(StatusCode::GATEWAY_TIMEOUT)?;
        let (acks, _) = post_until_stored(s.gw(1), &path, &stalled, 20).await?;
        check_acks(&small[10..], &acks, None)?;
        Ok(())
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_produce_quota_is_answered_429_and_no_ack_is_lost() -> anyhow::Result<()> {
    const POSTS: usize = 12;
    const PER_POST: usize = 600;
    let records = signed(&unique("quota"), POSTS * PER_POST, 200)?;
    let quota: &[&str] = &["--quota-produce-bytes-per-sec", "131072"];
    let gateway: &[&str] = &["--buffer-bytes", "1048576"];
    let s = Setup::start(quota, ClientConfig::default(), &[gateway]).await?;
    let r = within(Duration::from_secs(120), async {
        let bodies: Vec<Vec<u8>> = records
            .chunks(PER_POST)
            .map(json_array)
            .collect::<Result<_, _>>()?;
        let path = s.path("/assertions");
        let burst: Vec<_> = bodies
            .iter()
            .map(|b| {
                let (addr, path, body) = (s.gw(0), path.clone(), b.clone());
                tokio::spawn(async move { post(addr, &path, JSON, body, &[]).await })
            })
            .collect();
        let mut acks = Vec::new();
        let mut refused = Vec::new();
        for (i, task) in burst.into_iter().enumerate() {
            let reply = task.await??;
            match reply.status {
                StatusCode::OK => acks.extend(acks_of(&reply, true)?),
                StatusCode::TOO_MANY_REQUESTS => {
                    reply.error()?;
                    let after = reply.header_u64("retry-after")?;
                    ensure!(after >= 1, "Retry-After: {after}");
                    refused.push(i);
                }
                _ => bail!("post #{i}: expected 200 or 429, got {reply}"),
            }
        }
        eprintln!("burst: {} of {POSTS} posts answered 429", refused.len());
        ensure!(!refused.is_empty(), "no post of the burst was answered 429");
        // Every ack of the burst names its record, where it is.
        let log = read_topic(&s.cluster.bootstrap(), &s.topic, T).await?;
        check_acks_present(&log, &acks.iter().map(ack_of).collect::<Vec<_>>())?;

        // The refused ones, again, each until it goes through.
        for i in refused {
            let (a, _) = post_until_stored(s.gw(0), &path, &bodies[i], 40).await?;
            check_acks(&records[i * PER_POST..(i + 1) * PER_POST], &a, None)?;
            acks.extend(a);
        }
        let log = read_topic(&s.cluster.bootstrap(), &s.topic, T).await?;
        ensure!(check_log(&log)?.records == records.len(), "records lost");
        check_acks_present(&log, &acks.iter().map(ack_of).collect::<Vec<_>>())
    })
    .await;
    s.explain(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_need_a_known_token_and_act_with_their_brokers_acls() -> anyhow::Result<()> {
    let (ops, own) = (key(61), key(62));
    let writer = Principal::new("writer", 63);
    let reader = Principal::new("reader", 64);
    let dir = tempfile::tempdir()?;
    let mut file = String::new();
    for p in [&writer, &reader] {
        file.push_str(&p.entry(dir.path())?);
    }
    let principals = dir.path().join("principals.toml");
    std::fs::write(&principals, file)?;
    let own_key = dir.path().join("gateway.key");
    save_signing_key(&own_key, &own, Existing::Refuse)?;
    let ops_p = key_principal(&ops.verifying_key().to_bytes());
    let superuser = format!("--superuser={ops_p}");
    let brokers = ["--auth=required", "--authorization=on", &superuser];
    let as_ops = ClientConfig {
        connection: ConnectionConfig {
            auth_key: Some(AuthKey(ops.clone())),
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    };
    let gateway = [
        "--principals",
        principals.to_str().context("a UTF-8 path")?,
        "--broker-auth-key",
        own_key.to_str().context("a UTF-8 path")?,
    ];
    let s = Setup::start(&brokers, as_ops.clone(), &[&gateway]).await?;
    let r = within(Duration::from_secs(90), async {
        let admin = Admin::connect(&s.cluster.bootstrap(), as_ops).await?;
        let resource = format!("topic:{}", s.topic);
        for (who, op) in [(&writer, "produce"), (&reader, "consume")] {
            let acl =
                Acl::parse(&who.broker_principal(), &resource, op).map_err(anyhow::Error::msg)?;
            admin.add_acl(&acl).await?;
        }
        let path = s.path("/assertions");
        let records = signed(&unique("auth"), 6, 150)?;
        let body = json_array(&records[..3])?;

        // Who calls: nobody, or a token nobody has, is 401 (but /healthz and /metrics).
        let wrong = format!("Bearer {}", unique("guess"));
        for headers in [vec![], vec![("authorization", wrong.as_str())]] {
            let reply = post(s.gw(0), &path, JSON, body.clone(), &headers).await?;
            let what = format!("POST with {headers:?}");
            reply.expect_error(StatusCode::UNAUTHORIZED).context(what)?;
            let reply = get(s.gw(0), "/v1/topics", &headers).await?;
            reply.expect(StatusCode::UNAUTHORIZED)?;
        }
        eventually(T, "/healthz answers 200 without a token", || async {
            Ok(get(s.gw(0), "/healthz", &[]).await?.status == StatusCode::OK)
        })
        .await?;
        get_ok(s.gw(0), "/metrics").await?;

        // The writer may produce (ACLs reach every broker shortly after they are added).
        let as_writer = writer.bearer();
        let w = [("authorization", as_writer.as_str())];
        let mut acks = None;
        for _ in 0..50 {
            let reply = post(s.gw(0), &path, JSON, body.clone(), &w).await?;
            if reply.status == StatusCode::FORBIDDEN {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            acks = Some(acks_of(&reply, true)?);
            break;
        }
        let acks = acks.context("the writer stayed forbidden")?;
        check_acks(&records[..3], &acks, Some(false))?;

        // The reader may read what the writer wrote, but not write.
        let as_reader = reader.bearer();
        let rd = [("authorization", as_reader.as_str())];
        let reply = post(s.gw(0), &path, JSON, json_array(&records[3..])?, &rd).await?;
        reply
            .expect_error(StatusCode::FORBIDDEN)
            .context("the reader posts")?;
        let p = acks[0].partition;
        let reply = get(s.gw(0), &s.records_path(p, "from=earliest"), &rd)
            .await?
            .expect(StatusCode::OK)?;
        let got = reply.json_lines()?;
        ensure!(
            got.iter().any(|r| r["id"] == acks[0].id.to_hex()),
            "{reply}"
        );
        let reply = get(s.gw(0), &s.records_path(p, "from=earliest"), &w).await?;
        reply
            .expect_error(StatusCode::FORBIDDEN)
            .context("the writer reads")?;
        let d = admin.describe_topic(&s.topic).await?;
        let stored: u64 = d.partitions.iter().map(|p| p.high_watermark).sum();
        ensure!(stored == 3, "{stored} records stored, not 3");
        Ok(())
    })
    .await;
    s.explain(r)
}
