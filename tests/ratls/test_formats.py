"""RA-TLS wire formats: OIDs, CBOR tags, evidence/claims/endorsements buffers.

Expected bytes come from ``shared/specs/ratls.md`` §1.4 (tags, buffer layouts, the 32-bit
VERSION head) and §5.1 (framing facts of the real vectors: ``d9 ea60`` + ``82`` + ``59 xxxx``;
``pubkey-hash`` as ``58 24`` wrapping ``82 01 58 20 <32 B>``).  The real vectors themselves
are in test_real_certs.py.
"""

from __future__ import annotations

import hashlib
import struct

import cbor2
import pytest

from veritee.errors import ParseError
from veritee.ratls import formats
from veritee.ratls.formats import Endorsements, PubkeyHash

DIGEST = bytes(range(32))


def _header(version: int, att_key_type: int, tee_type: int) -> bytes:
    return struct.pack("<HHI", version, att_key_type, tee_type) + bytes(40)


def _endorsements(**changes: object) -> Endorsements:
    fields: dict[str, object] = {
        "version": 3,
        "tcb_info": b"tcb\x00",
        "tcb_info_issuer_chain": b"chain\x00",
        "pck_crl": b"crl",
        "root_ca_crl": b"rootcrl",
        "pck_crl_issuer_chain": b"pckchain\x00",
        "qe_identity": b"qe\x00",
        "qe_identity_issuer_chain": b"qechain\x00",
    }
    fields.update(changes)
    return Endorsements(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",  # a break outside an indefinite item
        cbor2.dumps([b"q", b"c"]),  # no tag
        cbor2.dumps(cbor2.CBORTag(12345, [b"q", b"c"])),  # unknown tag
        cbor2.dumps(cbor2.CBORTag(60000, b"q")),  # not an array
        cbor2.dumps(cbor2.CBORTag(60000, [b"q"])),  # one element
        cbor2.dumps(cbor2.CBORTag(60000, ["q", b"c"])),  # text evidence
        cbor2.dumps(cbor2.CBORTag(60000, [b"q", {"a": b"b"}])),  # claims not a bstr
    ],
)
def test_malformed_evidence_buffers_are_parse_errors(data: bytes) -> None:
    with pytest.raises(ParseError):
        formats.decode_evidence(data)


@pytest.mark.parametrize(
    "buffer",
    [
        b"\x82",  # truncated
        cbor2.dumps([1, 2]),  # not a map
        cbor2.dumps({}),  # empty
        cbor2.dumps({"nonce": b"n"}),  # no pubkey-hash
        cbor2.dumps({"pubkey-hash": "text"}),  # value not a bstr
        cbor2.dumps({1: b"x", "pubkey-hash": cbor2.dumps([1, DIGEST])}),  # non-text key
        cbor2.dumps({"pubkey-hash": cbor2.dumps({"alg": 1})}),  # not [alg, hash]
        cbor2.dumps({"pubkey-hash": cbor2.dumps([1, DIGEST, 3])}),
        cbor2.dumps({"pubkey-hash": cbor2.dumps([True, DIGEST])}),
        cbor2.dumps({"pubkey-hash": cbor2.dumps([1, "hash"])}),
        cbor2.dumps({"pubkey-hash": b"\xff"}),  # not CBOR inside
    ],
)
def test_malformed_claims_buffers_are_parse_errors(buffer: bytes) -> None:
    with pytest.raises(ParseError):
        formats.decode_claims(buffer)


def test_claims_cannot_override_pubkey_hash() -> None:
    with pytest.raises(ValueError, match="pubkey-hash"):
        formats.encode_claims(PubkeyHash(1, DIGEST), {"pubkey-hash": b"x"})


def test_claim_values_must_be_bytes() -> None:
    with pytest.raises(ValueError, match="bytes"):
        formats.encode_claims(PubkeyHash(1, DIGEST), {"k": "text"})  # type: ignore[dict-item]


def test_unknown_hash_algorithm_neither_hashes_nor_matches() -> None:
    with pytest.raises(ValueError, match="hash-alg-id 2"):
        formats.pubkey_hash(b"spki", 2)
    assert not PubkeyHash(2, hashlib.sha256(b"spki").digest()).matches(b"spki")
    assert not PubkeyHash(1, hashlib.sha256(b"other").digest()).matches(b"spki")


def test_no_tag_for_other_tees() -> None:
    with pytest.raises(ValueError, match="no DICE tag"):
        formats.encode_evidence("sample", b"q", b"c")


@pytest.mark.parametrize(
    "header",
    [b"\x03\x00", _header(3, 1, 0), _header(4, 2, 0x42), _header(6, 2, 0)],
    ids=["short", "v3-key-1", "v4-tee-0x42", "v6"],
)
def test_unknown_intel_quotes_are_parse_errors(header: bytes) -> None:
    with pytest.raises(ParseError):
        formats.intel_quote_kind(header)


def test_unknown_tag_has_no_kind() -> None:
    with pytest.raises(ParseError, match="unknown CBOR tag"):
        formats.evidence_kind(60003, b"")


@pytest.mark.parametrize(
    "data",
    [
        # VERSION with a minimal (1-byte) head: rats-tls's parser wants CBOR_INT_32
        cbor2.dumps(cbor2.CBORTag(60000, [3, b"a", b"b", b"c", b"d", b"e", b"f", b"g"])),
        # another tag
        formats.encode_endorsements(_endorsements(), tag=60001),
        # 7 entries
        cbor2.dumps(cbor2.CBORTag(60000, [3, b"a", b"b", b"c", b"d", b"e", b"f"])),
        # a text entry
        cbor2.dumps(cbor2.CBORTag(60000, [3, b"a", "b", b"c", b"d", b"e", b"f", b"g"])),
        # VERSION not an integer
        cbor2.dumps(cbor2.CBORTag(60000, [b"3", b"a", b"b", b"c", b"d", b"e", b"f", b"g"])),
        b"\x00garbage",
    ],
    ids=["short-version", "tag-60001", "seven", "text", "bstr-version", "garbage"],
)
def test_malformed_endorsements_are_parse_errors(data: bytes) -> None:
    with pytest.raises(ParseError):
        formats.decode_endorsements(data)


def test_endorsement_version_must_fit_32_bits() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        formats.encode_endorsements(_endorsements(version=2**32))


# ------------------------------------------------------------------------- accepted


def test_oids_are_the_specs() -> None:
    # spec §1.2, §1.4, §4.1
    assert formats.OID_DICE_EVIDENCE.dotted_string == "2.23.133.5.4.9"
    assert formats.OID_DICE_ENDORSEMENTS.dotted_string == "2.23.133.5.4.2"
    assert formats.OID_GRAMINE_LEGACY.dotted_string == "0.6.9.42.840.113741.1337.6"
    assert formats.OID_SGXSDK.dotted_string == "1.2.840.113741.1.13.1"
    legacy = {oid.dotted_string: kind for oid, kind in formats.LEGACY_OIDS}
    assert legacy["1.2.840.113741.1337.6"] == "sgx"
    assert legacy["1.2.840.113741.1337.8"] == "tdx"
    assert legacy["1.2.840.113741.1337.14"] == "sgx_la"
    assert legacy["1.2.840.113741.1337.20"] == "snp"
    # the legacy reader's order: .6, .8, .14, .20, .22, .24
    order = [oid.dotted_string.rsplit(".", 1)[1] for oid, _ in formats.LEGACY_OIDS]
    assert order[:6] == ["6", "8", "14", "20", "22", "24"]


def test_tags_are_the_specs() -> None:
    assert (formats.TAG_INTEL_QUOTE, formats.TAG_INTEL_REPORT, formats.TAG_SGX_EREPORT) == (
        60000,
        60001,
        60002,
    )
    assert formats.TAG_SNP_REPORT == 0x1A7504 == 1733892
    for old, new in ((0x1A7501, 60000), (0x1A7502, 60001), (0x1A7503, 60002)):
        assert formats.DICE_TAGS[old] == formats.DICE_TAGS[new]


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (_header(3, 2, 0), "sgx"),
        (_header(3, 3, 0), "sgx"),
        (_header(4, 2, 0), "sgx"),
        (_header(4, 2, 0x81), "tdx"),
        (_header(5, 2, 0x81), "tdx"),
        (_header(2, 0, 0), "sgx_epid"),
        (_header(3, 0, 0), "sgx_epid"),
    ],
)
def test_quote_kind_follows_rats_tls(header: bytes, kind: str) -> None:
    # spec §1.4, "Quote-type disambiguation for tag 60000"
    assert formats.intel_quote_kind(header) == kind
    assert formats.evidence_kind(60000, header) == kind
    assert formats.evidence_kind(0x1A7501, header) == kind


def test_non_quote_tags_name_their_kind() -> None:
    assert formats.evidence_kind(60002, b"") == "sgx_la"
    assert formats.evidence_kind(0x1A7504, b"") == "snp"


def test_evidence_framing_is_libcbors() -> None:
    quote, claims = bytes(4734), bytes(90)
    data = formats.encode_evidence("sgx", quote, claims)
    # d9 ea60 (tag 60000), 82 (array of 2), 59 127e (bstr of 4734), 58 5a (bstr of 90)
    assert data[:8] == bytes.fromhex("d9ea6082") + b"\x59" + (4734).to_bytes(2, "big") + b"\x00"
    assert data[3 + 1 + 3 + 4734 : 3 + 1 + 3 + 4734 + 2] == bytes.fromhex("585a")
    parsed = formats.decode_evidence(data)
    assert (parsed.tag, parsed.evidence, parsed.claims_buffer) == (60000, quote, claims)
    snp = formats.encode_evidence("snp", b"r", b"c")
    assert snp[:5] == bytes.fromhex("da001a7504")  # tag 0x1a7504: 4-byte head
    assert formats.decode_evidence(snp).tag == formats.TAG_SNP_REPORT


def test_claims_buffer_layout() -> None:
    buffer = formats.encode_claims(PubkeyHash(1, DIGEST), {"key_0": b"value_0\x00"})
    # a2: map of 2; 6b "pubkey-hash"; 58 24: bstr of 36 = 82 01 58 20 <32 B>
    expected = b"\xa2\x6bpubkey-hash\x58\x24\x82\x01\x58\x20" + DIGEST + b"\x65key_0\x48value_0\x00"
    assert buffer == expected
    key_hash, claims = formats.decode_claims(buffer)
    assert key_hash == PubkeyHash(1, DIGEST)
    assert list(claims) == ["pubkey-hash", "key_0"]


@pytest.mark.parametrize(("alg", "name"), [(1, "sha256"), (7, "sha384"), (8, "sha512")])
def test_pubkey_hash_algorithms(alg: int, name: str) -> None:
    key_hash = formats.pubkey_hash(b"spki", alg)
    assert key_hash.digest == hashlib.new(name, b"spki").digest()
    assert key_hash.matches(b"spki")
    assert not key_hash.matches(b"spkj")


def test_endorsements_version_has_a_32_bit_head() -> None:
    data = formats.encode_endorsements(_endorsements())
    # d9 ea60, 88 (array of 8), 1a 00000003 (VERSION, 32-bit head), 44 "tcb\0", ...
    assert data.startswith(bytes.fromhex("d9ea60881a0000000344") + b"tcb\x00")
    assert formats.decode_endorsements(data) == _endorsements()


def test_endorsements_with_creation_datetime_round_trip() -> None:
    nine = _endorsements(creation_datetime=b"2024-01-01T00:00:00Z")
    data = formats.encode_endorsements(nine)
    assert data[3] == 0x89
    assert formats.decode_endorsements(data) == nine
