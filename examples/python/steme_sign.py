"""Sign Steme assertions in Python, for the HTTP gateway (``steme-gateway``).

Standard library plus the ``cryptography`` package (for Ed25519). Three parts:

- :func:`blake3`: the BLAKE3 hash, in pure Python (the ids of assertions are BLAKE3).
- :func:`canonical`: the canonical encoding of an assertion (version 1), byte for byte
  what ``protocol/src/assertion/mod.rs`` writes.
- :func:`sign`: an assertion in, its signed JSON form out, ready to POST to
  ``/v1/topics/{topic}/assertions``: ``id``, the fields, ``signer`` and ``signature``.

``load_key`` reads a key file written by ``steme keygen``. Usage::

    import steme_sign
    key = steme_sign.load_key("me.key")
    signed = steme_sign.sign(
        {"subject": "urn:person:ada", "predicate": "name",
         "object": "Ada Lovelace", "source": "wiki"},
        key,
    )

An assertion is a dict in the JSON form ``steme produce`` reads: ``subject``,
``predicate``, ``object``, ``source``, and optionally ``confidence`` (0.0 to 1.0),
``supersedes`` (an id, 64 hex digits) and ``issued_at`` (ms since the Unix epoch, 0 when
absent). The object is a JSON string (text), integer, float or boolean, or
``{"bytes": "<hex>"}`` or ``{"ref": "<subject>"}``; the tagged forms ``{"text": ...}``,
``{"integer": ...}``, ``{"float": ...}`` and ``{"boolean": ...}`` are accepted too. As in
JSON, ``5`` is an integer and ``5.0`` a float: they encode differently and so have
different ids.

The same fields signed with the same key always give the same id and signature (Ed25519
is deterministic), so posting a signed assertion twice stores it once.

Checked against ``protocol/testdata/assertion-vectors.json`` and the official BLAKE3
test vectors by ``tests/python/test_vectors.py``.
"""

import math
import re
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["blake3", "canonical", "sign", "public_key", "load_key"]


# --------------------------------------------------------------------------------------
# BLAKE3 (the hash mode, 32-byte output), from the BLAKE3 specification.
#
# The input is split into 1024-byte chunks. Each chunk is hashed on its own, block by
# block (64-byte blocks) with a compression function, starting from the IV and numbered by
# its chunk counter; that gives the chunk's 32-byte chaining value. Chaining values are then
# combined pairwise by parent nodes into a binary tree whose left subtrees are always
# complete (a power of two chunks). The last compression, of the root chunk or root
# parent, carries the ROOT flag and its output is the hash.
# --------------------------------------------------------------------------------------

_IV = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
    0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)  # fmt: skip
# How the 16 message words are reordered between rounds.
_MSG_PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_BLOCK_LEN = 64
_CHUNK_LEN = 1024
# Domain flags of a compression.
_CHUNK_START = 1 << 0
_CHUNK_END = 1 << 1
_PARENT = 1 << 2
_ROOT = 1 << 3
_MASK32 = 0xFFFFFFFF


def _rotr(x, n):
    """Rotates a 32-bit word right by ``n`` bits."""
    return ((x >> n) | (x << (32 - n))) & _MASK32


def _g(s, a, b, c, d, mx, my):
    """The quarter-round: mixes two message words into four state words."""
    s[a] = (s[a] + s[b] + mx) & _MASK32
    s[d] = _rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK32
    s[b] = _rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + my) & _MASK32
    s[d] = _rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK32
    s[b] = _rotr(s[b] ^ s[c], 7)


def _round(s, m):
    """One round: the four columns of the 4x4 state, then its four diagonals."""
    _g(s, 0, 4, 8, 12, m[0], m[1])
    _g(s, 1, 5, 9, 13, m[2], m[3])
    _g(s, 2, 6, 10, 14, m[4], m[5])
    _g(s, 3, 7, 11, 15, m[6], m[7])
    _g(s, 0, 5, 10, 15, m[8], m[9])
    _g(s, 1, 6, 11, 12, m[10], m[11])
    _g(s, 2, 7, 8, 13, m[12], m[13])
    _g(s, 3, 4, 9, 14, m[14], m[15])


def _compress(cv, block_words, counter, block_len, flags):
    """The compression function: 8 chaining words and a 16-word block in, 16 words out."""
    state = [
        *cv,
        *_IV[:4],
        counter & _MASK32,
        (counter >> 32) & _MASK32,
        block_len,
        flags,
    ]
    m = list(block_words)
    for r in range(7):
        _round(state, m)
        if r < 6:
            m = [m[i] for i in _MSG_PERMUTATION]
    for i in range(8):
        state[i] ^= state[i + 8]
        state[i + 8] ^= cv[i]
    return state


def _block_words(block):
    """A block of at most 64 bytes as 16 little-endian words, zero-padded."""
    return struct.unpack("<16I", bytes(block).ljust(_BLOCK_LEN, b"\0"))


class _Output:
    """A node's last compression, not yet run: as a chaining value for its parent, or
    with the ROOT flag as the hash."""

    def __init__(self, cv, block_words, counter, block_len, flags):
        self.cv = cv
        self.block_words = block_words
        self.counter = counter
        self.block_len = block_len
        self.flags = flags

    def chaining_value(self):
        words = _compress(
            self.cv, self.block_words, self.counter, self.block_len, self.flags
        )
        return words[:8]

    def root_hash(self):
        # The root's counter is the output block number (0 for the first 32 bytes), not
        # the chunk counter.
        words = _compress(
            self.cv, self.block_words, 0, self.block_len, self.flags | _ROOT
        )
        return struct.pack("<8I", *words[:8])


def _chunk_output(chunk, chunk_counter):
    """Hashes one chunk (at most 1024 bytes; the empty input is one empty block)."""
    cv = _IV
    starts = range(0, len(chunk), _BLOCK_LEN) if chunk else [0]
    last = len(starts) - 1
    for i, start in enumerate(starts):
        block = chunk[start : start + _BLOCK_LEN]
        flags = _CHUNK_START if i == 0 else 0
        if i == last:
            return _Output(
                cv, _block_words(block), chunk_counter, len(block), flags | _CHUNK_END
            )
        cv = _compress(cv, _block_words(block), chunk_counter, _BLOCK_LEN, flags)[:8]
    raise AssertionError("unreachable: a chunk has at least one block")


def _left_len(content_len):
    """How many bytes go to the left subtree: the largest power of two of whole chunks
    that leaves at least one byte to the right."""
    full_chunks = (content_len - 1) // _CHUNK_LEN
    return (1 << (full_chunks.bit_length() - 1)) * _CHUNK_LEN


def _subtree(data, chunk_counter):
    """The output of the subtree over ``data``, whose first chunk is ``chunk_counter``."""
    if len(data) <= _CHUNK_LEN:
        return _chunk_output(data, chunk_counter)
    left_len = _left_len(len(data))
    left = _subtree(data[:left_len], chunk_counter).chaining_value()
    right = _subtree(data[left_len:], chunk_counter + left_len // _CHUNK_LEN)
    return _Output(_IV, (*left, *right.chaining_value()), 0, _BLOCK_LEN, _PARENT)


def blake3(data):
    """The 32-byte BLAKE3 hash of ``data`` (bytes-like)."""
    return _subtree(memoryview(bytes(data)), 0).root_hash()


# --------------------------------------------------------------------------------------
# The canonical encoding, version 1 (all integers little-endian):
#
#   u8 version = 1 | [u8; 32] signer | u64 issued_at | u8 flags
#   | f64 confidence (if flags bit 0) | [u8; 32] supersedes (if flags bit 1)
#   | subject   : u16 length, UTF-8 (not empty)
#   | predicate : u16 length, UTF-8 (not empty)
#   | object    : u8 tag, then  0 text    u32 length, UTF-8
#   |                           1 integer i64
#   |                           2 float   f64 (finite)
#   |                           3 boolean u8 0|1
#   |                           4 bytes   u32 length, bytes
#   |                           5 ref     u16 length, UTF-8 (not empty)
#   | source    : u16 length, UTF-8
#
# id = BLAKE3(canonical bytes); the signature is Ed25519 over the 32 id bytes.
# --------------------------------------------------------------------------------------

VERSION = 1
MAX_ASSERTION_LEN = 1 << 20
_FLAG_CONFIDENCE = 1 << 0
_FLAG_SUPERSEDES = 1 << 1
_TEXT, _INTEGER, _FLOAT, _BOOLEAN, _BYTES, _REF = range(6)
_FIELDS = (
    "subject",
    "predicate",
    "object",
    "source",
    "confidence",
    "supersedes",
    "issued_at",
)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_I64 = (-(1 << 63), (1 << 63) - 1)
_U64_MAX = (1 << 64) - 1


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_float(v):
    """``v`` as a float if it is a number (not a bool) and finite as one, else None."""
    if not _is_number(v):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int too large for a float
        return None
    return f if math.isfinite(f) else None


def _hex_bytes(field, text, length=None):
    if not isinstance(text, str) or not _HEX.fullmatch(text):
        raise ValueError(f"{field} must be a string of hex digit pairs, got {text!r}")
    raw = bytes.fromhex(text)
    if length is not None and len(raw) != length:
        raise ValueError(f"{field} must be {2 * length} hex digits, got {len(text)}")
    return raw


def _name(field, text, non_empty):
    """A u16-length-prefixed UTF-8 string."""
    if not isinstance(text, str):
        raise ValueError(f"{field} must be a string, got {text!r}")
    raw = text.encode("utf-8")
    if non_empty and not raw:
        raise ValueError(f"{field} must not be empty")
    if len(raw) > 0xFFFF:
        raise ValueError(f"{field} is {len(raw)} bytes, more than the 65535 allowed")
    return struct.pack("<H", len(raw)) + raw


def _object(value):
    """The object's tag and encoded value, from its JSON form."""
    kind, inner = _object_kind(value)
    if kind == _TEXT:
        if not isinstance(inner, str):
            raise ValueError(f"a text object must be a string, got {inner!r}")
        raw = inner.encode("utf-8")
        return bytes([_TEXT]) + struct.pack("<I", len(raw)) + raw
    if kind == _INTEGER:
        if not _is_int(inner) or not _I64[0] <= inner <= _I64[1]:
            raise ValueError(f"an integer object must be an i64, got {inner!r}")
        return bytes([_INTEGER]) + struct.pack("<q", inner)
    if kind == _FLOAT:
        number = _finite_float(inner)
        if number is None:
            raise ValueError(f"a float object must be a finite number, got {inner!r}")
        return bytes([_FLOAT]) + struct.pack("<d", number)
    if kind == _BOOLEAN:
        if not isinstance(inner, bool):
            raise ValueError(f"a boolean object must be true or false, got {inner!r}")
        return bytes([_BOOLEAN, int(inner)])
    if kind == _BYTES:
        raw = _hex_bytes("a bytes object", inner)
        return bytes([_BYTES]) + struct.pack("<I", len(raw)) + raw
    return bytes([_REF]) + _name("object ref", inner, non_empty=True)


def _object_kind(value):
    """Which type the JSON object value is, and its plain value."""
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return _BOOLEAN, value
    if isinstance(value, str):
        return _TEXT, value
    if isinstance(value, int):
        return _INTEGER, value
    if isinstance(value, float):
        return _FLOAT, value
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        tags = {
            "text": _TEXT,
            "integer": _INTEGER,
            "float": _FLOAT,
            "boolean": _BOOLEAN,
            "bytes": _BYTES,
            "ref": _REF,
        }
        if key in tags:
            return tags[key], inner
    raise ValueError(
        'object must be a string, number, boolean, {"bytes": hex} or {"ref": subject}, '
        f"got {value!r}"
    )


def canonical(assertion, signer):
    """The canonical bytes of ``assertion`` (a dict in its JSON form) as signed by the
    32-byte Ed25519 public key ``signer``. Raises ``ValueError`` for anything the Rust
    encoder would refuse (a missing or unknown field, an empty subject, a confidence
    outside 0.0..=1.0, ...)."""
    if not isinstance(assertion, dict):
        raise ValueError(f"an assertion must be a dict, got {type(assertion).__name__}")
    unknown = sorted(set(assertion) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; an assertion has {list(_FIELDS)}")
    for field in ("subject", "predicate", "object", "source"):
        if field not in assertion:
            raise ValueError(f"missing field {field}")
    signer = bytes(signer)
    if len(signer) != 32:
        raise ValueError(f"signer must be 32 bytes, got {len(signer)}")

    issued_at = assertion.get("issued_at", 0)
    if not _is_int(issued_at) or not 0 <= issued_at <= _U64_MAX:
        raise ValueError(
            f"issued_at must be a u64 (ms since the epoch), got {issued_at!r}"
        )

    flags = 0
    optional = b""
    confidence = assertion.get("confidence")
    if confidence is not None:
        number = _finite_float(confidence)
        # -0.0 is refused so that one value has one encoding.
        if number is None or not 0.0 <= number <= 1.0 or math.copysign(1.0, number) < 0:
            raise ValueError(
                f"confidence must be a finite number in 0.0..=1.0, got {confidence!r}"
            )
        flags |= _FLAG_CONFIDENCE
        optional += struct.pack("<d", number)
    supersedes = assertion.get("supersedes")
    if supersedes is not None:
        flags |= _FLAG_SUPERSEDES
        optional += _hex_bytes("supersedes", supersedes, length=32)

    out = (
        bytes([VERSION])
        + signer
        + struct.pack("<QB", issued_at, flags)
        + optional
        + _name("subject", assertion["subject"], non_empty=True)
        + _name("predicate", assertion["predicate"], non_empty=True)
        + _object(assertion["object"])
        + _name("source", assertion["source"], non_empty=False)
    )
    if len(out) > MAX_ASSERTION_LEN:
        raise ValueError(
            f"the assertion is {len(out)} bytes, "
            f"more than the {MAX_ASSERTION_LEN} allowed"
        )
    return out


def _plain_object(value):
    """The object as Steme writes it back: text, numbers and booleans plain, bytes and
    references tagged (hex in lower case)."""
    kind, inner = _object_kind(value)
    if kind == _BYTES:
        return {"bytes": inner.lower()}
    if kind == _REF:
        return {"ref": inner}
    if kind == _FLOAT:
        return float(inner)
    return inner


def public_key(private_key):
    """The raw 32-byte public key of an ``Ed25519PrivateKey``."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(assertion, private_key):
    """Signs ``assertion`` (a dict in its JSON form) with ``private_key`` (an
    ``Ed25519PrivateKey``) and returns the signed JSON form the gateway accepts, with
    the fields in the order ``steme sign`` prints them::

        {"id": ..., "subject": ..., "predicate": ..., "object": ..., "source": ...,
         ["confidence": ...,] ["supersedes": ...,] "issued_at": ...,
         "signer": ..., "signature": ...}

    ``id``, ``signer`` and ``signature`` are lower-case hex. ``issued_at`` is written
    even when absent from the input (it is then 0, as it was signed).
    """
    signer = public_key(private_key)
    encoded = canonical(assertion, signer)
    assertion_id = blake3(encoded)
    signature = private_key.sign(assertion_id)

    signed = {
        "id": assertion_id.hex(),
        "subject": assertion["subject"],
        "predicate": assertion["predicate"],
        "object": _plain_object(assertion["object"]),
        "source": assertion["source"],
    }
    confidence = assertion.get("confidence")
    if confidence is not None:
        signed["confidence"] = float(confidence)
    supersedes = assertion.get("supersedes")
    if supersedes is not None:
        signed["supersedes"] = supersedes.lower()
    signed["issued_at"] = assertion.get("issued_at", 0)
    signed["signer"] = signer.hex()
    signed["signature"] = signature.hex()
    return signed


def load_key(path):
    """The ``Ed25519PrivateKey`` in a key file written by ``steme keygen``: the 32-byte
    seed as 64 hex digits on one line."""
    with open(path, encoding="ascii") as f:
        text = f.read().strip()
    seed = _hex_bytes(f"the key file {path}", text, length=32)
    return Ed25519PrivateKey.from_private_bytes(seed)
