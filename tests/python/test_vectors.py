"""examples/python/steme_sign.py against the cross-language test vectors.

For every vector of protocol/testdata/assertion-vectors.json: the canonical bytes, the id
(BLAKE3, in pure Python), the public key and the signature (Ed25519 is deterministic) must
be the vector's. BLAKE3 itself is checked against the official test vectors (input bytes
i % 251), over one chunk, chunk boundaries and several tree shapes.

Run: python3 tests/python/test_vectors.py   (exits non-zero on failure; run by
tests/tests/python_vectors.rs in `cargo test -p steme-tests`).
"""

import json
import math
import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

import steme_sign  # noqa: E402

VECTORS = ROOT / "protocol" / "testdata" / "assertion-vectors.json"

# The first 32 bytes of BLAKE3's official test_vectors.json ("hash"), input i % 251, by
# input length. 5000 (not in that file) is from the Rust blake3 crate.
BLAKE3_HASHES = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    2048: "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
    2049: "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
    3072: "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2",
    3073: "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
    4097: "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995",
    5000: "ee78d92070de3df1c57c37002abf0a6b1a6589acdeef4d8ffac7cf3d9e8f2836",
    5121: "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff",
    8192: "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63",
    8193: "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b",
    31744: "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47",
}


def load_vectors():
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


def key_of(seed_hex):
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


class Blake3(unittest.TestCase):
    def test_matches_the_official_vectors_at_every_tree_shape(self):
        for length, expected in BLAKE3_HASHES.items():
            with self.subTest(length=length):
                data = bytes(i % 251 for i in range(length))
                self.assertEqual(steme_sign.blake3(data).hex(), expected)

    def test_accepts_any_bytes_like_input(self):
        data = bytes(range(100))
        digest = steme_sign.blake3(data)
        self.assertEqual(steme_sign.blake3(bytearray(data)), digest)
        self.assertEqual(steme_sign.blake3(memoryview(data)), digest)
        self.assertEqual(len(digest), 32)


class AssertionVectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vectors = load_vectors()

    def test_there_are_vectors(self):
        self.assertGreaterEqual(len(self.vectors), 10)

    def test_canonical_bytes_id_key_and_signature_equal_each_vector(self):
        for v in self.vectors:
            with self.subTest(vector=v["name"]):
                key = key_of(v["seed"])
                signer = steme_sign.public_key(key)
                self.assertEqual(signer.hex(), v["public_key"])
                encoded = steme_sign.canonical(v["assertion"], signer)
                self.assertEqual(encoded.hex(), v["canonical"])
                self.assertEqual(steme_sign.blake3(encoded).hex(), v["id"])
                self.assertEqual(key.sign(bytes.fromhex(v["id"])).hex(), v["signature"])

    def test_sign_gives_the_signed_json_form_of_each_vector(self):
        for v in self.vectors:
            with self.subTest(vector=v["name"]):
                signed = steme_sign.sign(v["assertion"], key_of(v["seed"]))
                self.assertEqual(signed["id"], v["id"])
                self.assertEqual(signed["signer"], v["public_key"])
                self.assertEqual(signed["signature"], v["signature"])
                keys = list(signed)
                self.assertEqual(keys[0], "id")
                self.assertEqual(keys[-2:], ["signer", "signature"])
                fields = {k: signed[k] for k in keys[1:-2]}
                self.assertEqual(fields, {"issued_at": 0, **v["assertion"]})
                # The form survives JSON and still encodes to the same bytes.
                again = json.loads(json.dumps(signed))
                self.assertEqual(
                    steme_sign.canonical(fields, bytes.fromhex(again["signer"])).hex(),
                    v["canonical"],
                )
                Ed25519PublicKey.from_public_bytes(
                    bytes.fromhex(again["signer"])
                ).verify(bytes.fromhex(again["signature"]), bytes.fromhex(again["id"]))


BASE = {"subject": "s", "predicate": "p", "object": "o", "source": "x"}
SIGNER = bytes(range(32))


def encode(**changes):
    assertion = {**BASE, **changes}
    return steme_sign.canonical(
        {k: v for k, v in assertion.items() if v is not ...}, SIGNER
    )


class Encoding(unittest.TestCase):
    def test_the_object_types_encode_differently(self):
        encodings = {
            encode(object=v)
            for v in ("1", 1, 1.0, True, {"bytes": "01"}, {"ref": "1"})
        }
        self.assertEqual(len(encodings), 6)

    def test_tagged_objects_equal_plain_ones(self):
        self.assertEqual(encode(object={"text": "o"}), encode(object="o"))
        self.assertEqual(encode(object={"integer": 5}), encode(object=5))
        self.assertEqual(encode(object={"float": 5}), encode(object=5.0))
        self.assertEqual(encode(object={"boolean": False}), encode(object=False))
        self.assertEqual(
            encode(object={"bytes": "ABCD"}), encode(object={"bytes": "abcd"})
        )

    def test_absent_and_null_optionals_are_the_same(self):
        self.assertEqual(encode(confidence=None, supersedes=None), encode())
        self.assertEqual(encode(issued_at=0), encode())

    def test_sign_writes_objects_back_in_plain_form(self):
        key = key_of("07" * 32)

        def signed_object(value):
            return steme_sign.sign({**BASE, "object": value}, key)["object"]

        self.assertEqual(signed_object({"text": "o"}), "o")
        self.assertIsInstance(signed_object({"float": 2}), float)
        self.assertEqual(signed_object({"bytes": "AB"}), {"bytes": "ab"})
        self.assertEqual(signed_object({"ref": "r"}), {"ref": "r"})

    def test_refuses_what_the_rust_encoder_refuses(self):
        bad = {
            "empty subject": dict(subject=""),
            "empty predicate": dict(predicate=""),
            "subject not a string": dict(subject=1),
            "long source": dict(source="x" * 65536),
            "empty ref": dict(object={"ref": ""}),
            "nan": dict(object=math.nan),
            "infinity": dict(object={"float": math.inf}),
            "i64 overflow": dict(object=1 << 63),
            "i64 underflow": dict(object=-(1 << 63) - 1),
            "odd hex": dict(object={"bytes": "abc"}),
            "not hex": dict(object={"bytes": "zz"}),
            "two-key object": dict(object={"text": "a", "ref": "b"}),
            "unknown tag": dict(object={"uuid": "x"}),
            "list object": dict(object=[1]),
            "null object": dict(object=None),
            "confidence above 1": dict(confidence=1.5),
            "confidence negative zero": dict(confidence=-0.0),
            "confidence nan": dict(confidence=math.nan),
            "confidence bool": dict(confidence=True),
            "short supersedes": dict(supersedes="ab" * 31),
            "negative issued_at": dict(issued_at=-1),
            "float issued_at": dict(issued_at=1.5),
            "null issued_at": dict(issued_at=None),
            "unknown field": dict(subjet="s"),
            "missing source": dict(source=...),
        }
        for name, changes in bad.items():
            with self.subTest(name):
                with self.assertRaises(ValueError):
                    encode(**changes)
        with self.assertRaises(ValueError):
            steme_sign.canonical({**BASE}, b"short")

    def test_extremes_that_are_allowed(self):
        encode(object=-(1 << 63))
        encode(object=(1 << 63) - 1)
        encode(object=-0.0)
        encode(confidence=0.0, issued_at=(1 << 64) - 1)
        encode(confidence=1)
        encode(source="")
        encode(subject="s" * 65535)


class KeyFiles(unittest.TestCase):
    def test_load_key_reads_a_keygen_file(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "me.key"
            path.write_text("01" * 32 + "\n")
            key = steme_sign.load_key(path)
            self.assertEqual(
                steme_sign.public_key(key).hex(),
                "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
            )
            path.write_text("not a key\n")
            with self.assertRaises(ValueError):
                steme_sign.load_key(path)


if __name__ == "__main__":
    unittest.main()
