"""The HTTP gateway, end to end from Python, against a running `steme-gateway`.

Signs assertions with examples/python/steme_sign.py and checks the contract of
client/gateway/GATEWAY.md:

1. a JSON-array post and a JSON-lines post are each answered with one ack per record,
   in input order, in the form of the request, with the ids the records hash to;
2. posting a stored record again is acknowledged with `"duplicate": true` at the place
   of the first copy;
3. a post with one tampered signature is answered 400 naming that record's index, and
   nothing from it is stored (its good records post afterwards as new);
4. every acknowledged record reads back (GET .../records?from=OFFSET&max=1) at its
   partition and offset with its id, signer, signature and fields;
5. examples/python/produce.py runs against the gateway and exits 0.

Usage: python3 tests/python/test_gateway.py --gateway http://127.0.0.1:8080 \
           [--key FILE] [--topic facts]
The topic must exist. Without --key a fresh key is used. Exits 1 with a message on the
first failure.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
)

import steme_sign  # noqa: E402

ACK_FIELDS = {"id", "partition", "offset", "hlc", "time", "logical", "duplicate"}
PLACE_FIELDS = {"partition", "offset", "hlc", "time", "logical"}
TIMEOUT_S = 60


class Failure(Exception):
    """A broken expectation; the message says which."""


def check(condition, message):
    if not condition:
        raise Failure(message)


class Gateway:
    def __init__(self, base_url, topic):
        self.base = base_url.rstrip("/")
        self.topic = topic
        self.topic_path = "/v1/topics/" + urllib.parse.quote(topic, safe="")

    @property
    def assertions_url(self):
        return self.base + self.topic_path + "/assertions"

    def request(self, method, path_or_url, body=None, content_type=None):
        """Returns (status, headers, body bytes); HTTP error statuses are returned too."""
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        headers = {"Content-Type": content_type} if content_type else {}
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def post_array(self, records):
        body = json.dumps(records).encode()
        return self.request("POST", self.assertions_url, body, "application/json")

    def post_lines(self, records):
        body = "".join(json.dumps(r) + "\n" for r in records).encode()
        return self.request("POST", self.assertions_url, body, "application/x-ndjson")

    def read_one(self, partition, offset):
        path = f"{self.topic_path}/partitions/{partition}/records?from={offset}&max=1"
        return self.request("GET", path)


def json_body(status, body, what):
    try:
        return json.loads(body)
    except ValueError as e:
        raise Failure(f"{what}: HTTP {status}, body is not JSON ({e}): {body[:500]!r}")


def json_lines(status, body, what):
    try:
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    except ValueError as e:
        raise Failure(f"{what}: HTTP {status}, not JSON lines ({e}): {body[:500]!r}")


def expect_status(status, body, expected, what):
    check(
        status == expected,
        f"{what}: expected HTTP {expected}, got {status}: {body[:1000]!r}",
    )


def assertions(run, count):
    """`count` assertions unique to this run, covering every object type and the
    optional fields."""
    now = int(time.time() * 1000)
    objects = [
        "a text",
        -42,
        2.5,
        True,
        {"bytes": "00ff10"},
        {"ref": f"urn:test:{run}:other"},
        "ünïcødé ✓",
    ]
    out = []
    for i in range(count):
        a = {
            "subject": f"urn:test:{run}:subject:{i % 7}",
            "predicate": f"test:p{i}",
            "object": objects[i % len(objects)],
            "source": "tests/python/test_gateway.py",
            "issued_at": now + i,
        }
        if i % 3 == 0:
            a["confidence"] = 0.5
        if i % 5 == 4:
            a["supersedes"] = "ab" * 32
        out.append(a)
    return out


def check_acks(acks, signed, what):
    check(
        len(acks) == len(signed),
        f"{what}: {len(signed)} records posted, {len(acks)} acks: {acks}",
    )
    for i, (ack, record) in enumerate(zip(acks, signed)):
        check(isinstance(ack, dict), f"{what}: ack {i} is not an object: {ack!r}")
        missing = ACK_FIELDS - set(ack)
        check(not missing, f"{what}: ack {i} lacks {sorted(missing)}: {ack}")
        check(
            ack["id"] == record["id"],
            f"{what}: ack {i} has id {ack['id']}, the record's id is {record['id']}",
        )
        check(ack["duplicate"] is False, f"{what}: ack {i} is a duplicate: {ack}")


def post_and_check(gateway, signed):
    """Posts half the records as an array and half as lines; returns their acks."""
    half = len(signed) // 2
    status, _, body = gateway.post_array(signed[:half])
    expect_status(status, body, 200, "array post")
    acks = json_body(status, body, "array post")
    check(isinstance(acks, list), f"array post: the answer is not a JSON array: {acks!r}")
    check_acks(acks, signed[:half], "array post")
    print(f"ok: array post of {half} records, one ack each")

    status, _, body = gateway.post_lines(signed[half:])
    expect_status(status, body, 200, "JSON-lines post")
    line_acks = json_lines(status, body, "JSON-lines post")
    check_acks(line_acks, signed[half:], "JSON-lines post")
    print(f"ok: JSON-lines post of {len(signed) - half} records, one ack line each")
    return acks + line_acks


def check_duplicate(gateway, record, first_ack):
    status, _, body = gateway.post_array([record])
    expect_status(status, body, 200, "posting a stored record again")
    acks = json_body(status, body, "posting a stored record again")
    check(isinstance(acks, list) and len(acks) == 1, f"one ack expected: {acks!r}")
    ack = acks[0]
    check(ack.get("duplicate") is True, f"a stored record posted again: {ack}")
    check(ack["id"] == record["id"], f"duplicate ack has the wrong id: {ack}")
    place = (ack["partition"], ack["offset"])
    check(
        place == (first_ack["partition"], first_ack["offset"]),
        f"duplicate ack {ack} is not at the first copy's place {first_ack}",
    )
    print("ok: a stored record posted again is acknowledged as a duplicate")


def check_tampered(gateway, key, run):
    records = [steme_sign.sign(a, key) for a in assertions(f"{run}-tampered", 3)]
    signature = bytearray.fromhex(records[1]["signature"])
    signature[0] ^= 0x01
    tampered = [records[0], {**records[1], "signature": signature.hex()}, records[2]]
    status, _, body = gateway.post_array(tampered)
    expect_status(status, body, 400, "a post with a tampered signature")
    answer = json_body(status, body, "a post with a tampered signature")
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    check(
        error.get("code") == "invalid_records",
        f"a tampered post: error code is not invalid_records: {answer}",
    )
    bad = answer.get("records")
    check(
        isinstance(bad, list) and [r.get("index") for r in bad] == [1],
        f"a tampered post must name exactly record 1 as bad: {answer}",
    )
    print("ok: a tampered signature is refused with 400 naming its index")

    # Nothing from the refused post was stored: its good records are new now.
    good = [records[0], records[2]]
    status, _, body = gateway.post_array(good)
    expect_status(status, body, 200, "the good records of the refused post")
    what = "the refused post's good records"
    check_acks(json_body(status, body, what), good, what)
    print("ok: nothing from the refused post had been stored")


def check_read_back(gateway, signed, acks):
    for record, ack in zip(signed, acks):
        what = f"reading back {record['id']} at {ack['partition']}/{ack['offset']}"
        status, headers, body = gateway.read_one(ack["partition"], ack["offset"])
        expect_status(status, body, 200, what)
        lines = json_lines(status, body, what)
        check(len(lines) == 1, f"{what}: expected 1 record, got {len(lines)}: {lines}")
        got = lines[0]
        for field in ("partition", "offset"):
            check(got.get(field) == ack[field], f"{what}: {field} is {got.get(field)}")
        for field, value in record.items():
            check(
                field in got and got[field] == value,
                f"{what}: {field} is {got.get(field)!r}, posted {value!r}",
            )
        extra = set(got) - set(record) - PLACE_FIELDS
        check(not extra, f"{what}: unexpected fields {sorted(extra)} in {got}")
        next_offset = headers.get("Steme-Next-Offset")
        check(
            next_offset is not None and int(next_offset) > ack["offset"],
            f"{what}: Steme-Next-Offset is {next_offset!r}",
        )
        watermark = headers.get("Steme-High-Watermark")
        check(
            watermark is not None and int(watermark) > ack["offset"],
            f"{what}: Steme-High-Watermark is {watermark!r}",
        )
    print(f"ok: all {len(signed)} records read back with ids, signatures and fields")


def check_example(gateway, key_path):
    example = EXAMPLES / "produce.py"
    result = subprocess.run(
        [sys.executable, str(example), gateway.assertions_url, str(key_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    check(
        result.returncode == 0,
        f"{example} exited {result.returncode}:\n{result.stdout}{result.stderr}",
    )
    acks = json_lines(200, result.stdout.encode(), f"{example}'s output")
    check(
        len(acks) == 2 and all(ACK_FIELDS <= set(a) for a in acks),
        f"{example} should print two acks: {result.stdout!r}",
    )
    print(f"ok: {example.relative_to(ROOT)} posted two assertions")


def run(args, key_path):
    gateway = Gateway(args.gateway, args.topic)
    key = steme_sign.load_key(key_path)
    run_id = f"{os.getpid()}-{time.time_ns()}"
    signed = [steme_sign.sign(a, key) for a in assertions(run_id, 20)]

    acks = post_and_check(gateway, signed)
    check_duplicate(gateway, signed[3], acks[3])
    check_tampered(gateway, key, run_id)
    check_read_back(gateway, signed, acks)
    check_example(gateway, key_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--key", help="a `steme keygen` key file (default: a fresh key)")
    parser.add_argument("--topic", default="facts", help="an existing topic")
    args = parser.parse_args()
    try:
        if args.key:
            run(args, args.key)
        else:
            with tempfile.TemporaryDirectory() as d:
                key_path = pathlib.Path(d) / "test.key"
                seed = Ed25519PrivateKey.generate().private_bytes_raw()
                key_path.write_text(seed.hex() + "\n")
                run(args, key_path)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except urllib.error.URLError as e:
        print(f"FAIL: cannot reach the gateway at {args.gateway}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("all gateway checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
