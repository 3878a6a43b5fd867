"""RA-TLS wire formats: extension OIDs, CBOR tags, and the DICE evidence, claims and
endorsements buffers (``shared/specs/ratls.md`` §1.2, §1.4, §4.1).

Two generations exist.  The legacy one (enclave-tls, rats-tls before Dec 2022, Gramine's
first extension, the Intel SGX SDK) puts the raw quote or report in a private extension
whose OID names the TEE.  The DICE one (the CCC "Interoperable RA-TLS" format, current
rats-tls, Gramine ≥ 1.8, Intel SGX SDK ≥ 2.22) puts ``tag([bstr evidence, bstr claims])``
in 2.23.133.5.4.9, where the claims buffer is a CBOR map holding ``pubkey-hash``, and
optionally the DCAP collateral in 2.23.133.5.4.2.

Every CBOR byte is written and read by ``cbor2``.  Its encoder writes definite lengths and
minimal heads, as libcbor does in rats-tls and Gramine, so re-encoding a parsed evidence
buffer gives the extension's bytes back exactly.  The one non-minimal head, the
endorsements' 32-bit VERSION, goes through cbor2's ``default`` hook.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography import x509

from veritee.errors import ParseError

__all__ = [
    "DICE_TAGS",
    "ENDORSEMENT_FIELDS",
    "HASH_ALGORITHMS",
    "LEGACY_OIDS",
    "OID_DICE_ENDORSEMENTS",
    "OID_DICE_EVIDENCE",
    "OID_GRAMINE_LEGACY",
    "OID_SGXSDK",
    "PUBKEY_HASH",
    "TAG_INTEL_QUOTE",
    "TAG_INTEL_REPORT",
    "TAG_SGX_EREPORT",
    "TAG_SNP_REPORT",
    "DiceEvidence",
    "Endorsements",
    "PubkeyHash",
    "decode_claims",
    "decode_endorsements",
    "decode_evidence",
    "encode_claims",
    "encode_endorsements",
    "encode_evidence",
    "encode_tagged",
    "endorsements_collateral",
    "endorsements_from_collateral",
    "evidence_kind",
    "intel_quote_kind",
    "pubkey_hash",
]

# --------------------------------------------------------------------------------- OIDs

#: TCG DICE "tagged evidence" (conceptual message wrapper): the CBOR evidence buffer.
OID_DICE_EVIDENCE: Final = x509.ObjectIdentifier("2.23.133.5.4.9")
#: TCG DICE "endorsement manifest": the CBOR endorsements buffer (optional).
OID_DICE_ENDORSEMENTS: Final = x509.ObjectIdentifier("2.23.133.5.4.2")
#: Gramine's legacy quote extension: the DER of 1.2.840.113741.1337.6 used as the OID's
#: *content*, so the certificate shows 0.6.9.42.840.113741.1337.6.
OID_GRAMINE_LEGACY: Final = x509.ObjectIdentifier("0.6.9.42.840.113741.1337.6")
#: Intel SGX SDK attested TLS: the raw quote (also Intel's PCK "SGX extensions" OID).
OID_SGXSDK: Final = x509.ObjectIdentifier("1.2.840.113741.1.13.1")

_INCLAVARE = "1.2.840.113741.1337."
#: Inclavare legacy OIDs → evidence kind, in the order the legacy reader looks for them.
#: Kinds ``sgx``, ``tdx`` and ``snp`` are the ones veritee verifies.
LEGACY_OIDS: Final[tuple[tuple[x509.ObjectIdentifier, str], ...]] = (
    (x509.ObjectIdentifier(_INCLAVARE + "6"), "sgx"),  # sgx_ecdsa: DCAP quote v3
    (x509.ObjectIdentifier(_INCLAVARE + "8"), "tdx"),  # tdx_ecdsa: quote v4
    (x509.ObjectIdentifier(_INCLAVARE + "14"), "sgx_la"),  # local EREPORT
    (x509.ObjectIdentifier(_INCLAVARE + "20"), "snp"),  # SEV-SNP attestation report
    (x509.ObjectIdentifier(_INCLAVARE + "22"), "sev"),
    (x509.ObjectIdentifier(_INCLAVARE + "24"), "csv"),
    (x509.ObjectIdentifier(_INCLAVARE + "2"), "sgx_epid"),  # IAS report (EPID)
)

# --------------------------------------------------------------------------- CBOR tags

TAG_INTEL_QUOTE: Final = 60000  # SGX ECDSA (v3, v4 tee_type 0) or TDX (v4 tee_type 0x81)
TAG_INTEL_REPORT: Final = 60001  # TDX report / SGX report type 2
TAG_SGX_EREPORT: Final = 60002  # legacy SGX EREPORT (local attestation)
TAG_SNP_REPORT: Final = 0x1A7504  # rats-tls private value
TAG_SEV: Final = 0x1A7505
TAG_CSV: Final = 0x1A7506

#: Tag → evidence kind ("intel_quote" is split into sgx/tdx by the quote header).  The three
#: Intel tags rats-tls used before 2023-02-24 (0x1a7501..3) are accepted as well.
DICE_TAGS: Final[Mapping[int, str]] = {
    TAG_INTEL_QUOTE: "intel_quote",
    TAG_INTEL_REPORT: "intel_report",
    TAG_SGX_EREPORT: "sgx_la",
    0x1A7501: "intel_quote",
    0x1A7502: "intel_report",
    0x1A7503: "sgx_la",
    TAG_SNP_REPORT: "snp",
    TAG_SEV: "sev",
    TAG_CSV: "csv",
}
_TAG_FOR_TEE: Final = {"sgx": TAG_INTEL_QUOTE, "tdx": TAG_INTEL_QUOTE, "snp": TAG_SNP_REPORT}

# ------------------------------------------------------------------------------ claims

#: The claim binding the certificate's key (CoRIM ``hash-entry``).
PUBKEY_HASH: Final = "pubkey-hash"
#: IANA "Named Information Hash Algorithm" ids a verifier must support → hashlib name.
HASH_ALGORITHMS: Final[Mapping[int, str]] = {1: "sha256", 7: "sha384", 8: "sha512"}


def intel_quote_kind(raw: bytes) -> str:
    """``sgx``, ``tdx``, or why not, from an Intel quote header (rats-tls ``evidence_from_raw``):
    v3 with att_key_type 2/3 or v4 with tee_type 0 is SGX ECDSA; v4 with tee_type 0x81 is TDX;
    v2 and v3 with att_key_type 0 are EPID."""
    if len(raw) < 8:
        raise ParseError("intel quote", f"{len(raw)} bytes is too short for a quote header")
    version, att_key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
    if version == 3 and att_key_type in (2, 3):
        return "sgx"
    if version in (4, 5) and tee_type == 0:
        return "sgx"
    if version in (4, 5) and tee_type == 0x81:
        return "tdx"
    if version == 2 or (version == 3 and att_key_type == 0):
        return "sgx_epid"
    raise ParseError(
        "intel quote",
        f"unknown quote (version {version}, att_key_type {att_key_type}, tee_type 0x{tee_type:x})",
    )


def evidence_kind(tag: int, raw: bytes) -> str:
    """The evidence kind a DICE tag and its raw evidence name (``sgx``, ``tdx``, ``snp``, or
    an unverifiable kind such as ``sgx_la``)."""
    kind = DICE_TAGS.get(tag)
    if kind is None:
        raise ParseError("dice evidence", f"unknown CBOR tag {tag} (0x{tag:x})")
    return intel_quote_kind(raw) if kind == "intel_quote" else kind


@dataclass(frozen=True)
class PubkeyHash:
    """The ``pubkey-hash`` claim: ``[hash-alg-id, hash]``."""

    alg_id: int
    digest: bytes

    def matches(self, spki_der: bytes) -> bool:
        name = HASH_ALGORITHMS.get(self.alg_id)
        return name is not None and hashlib.new(name, spki_der).digest() == self.digest


def pubkey_hash(spki_der: bytes, alg_id: int = 1) -> PubkeyHash:
    name = HASH_ALGORITHMS.get(alg_id)
    if name is None:
        raise ValueError(f"unsupported hash-alg-id {alg_id}; expected one of 1, 7, 8")
    return PubkeyHash(alg_id, hashlib.new(name, spki_der).digest())


def encode_claims(key_hash: PubkeyHash, custom: Mapping[str, bytes] | None = None) -> bytes:
    """The claims buffer: ``{"pubkey-hash": bstr(cbor([alg, hash])), <name>: bstr, ...}``, in
    this order (rats-tls does not sort).  ``pubkey-hash`` cannot be given as a custom claim."""
    claims: dict[str, bytes] = {PUBKEY_HASH: cbor2.dumps([key_hash.alg_id, key_hash.digest])}
    for name, value in (custom or {}).items():
        if name == PUBKEY_HASH:
            raise ValueError("the pubkey-hash claim is made from the certificate's key")
        if not isinstance(name, str) or not isinstance(value, bytes):
            raise ValueError(f"claim {name!r}: names are text and values bytes")
        claims[name] = value
    return cbor2.dumps(claims)


def _loads(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise ParseError(what, f"not CBOR: {exc}") from exc


def decode_claims(buffer: bytes) -> tuple[PubkeyHash, dict[str, bytes]]:
    """Parse a claims buffer; returns ``pubkey-hash`` and every claim (raw bstr values)."""
    doc = _loads(buffer, "dice claims")
    if not isinstance(doc, dict) or not doc:
        raise ParseError("dice claims", "the claims buffer is not a non-empty CBOR map")
    claims: dict[str, bytes] = {}
    for name, value in doc.items():
        if not isinstance(name, str) or not isinstance(value, bytes):
            raise ParseError("dice claims", f"claim {name!r} is not a text key with a bstr value")
        claims[name] = value
    if PUBKEY_HASH not in claims:
        raise ParseError("dice claims", "no pubkey-hash claim")
    entry = _loads(claims[PUBKEY_HASH], "dice pubkey-hash")
    if (
        not isinstance(entry, list | tuple)
        or len(entry) != 2
        or not isinstance(entry[0], int)
        or isinstance(entry[0], bool)
        or not isinstance(entry[1], bytes)
    ):
        raise ParseError("dice pubkey-hash", "not a [uint hash-alg-id, bstr hash] array")
    return PubkeyHash(entry[0], entry[1]), claims


# ---------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class DiceEvidence:
    """One parsed evidence buffer: ``tag([bstr evidence, bstr claims_buffer])``."""

    tag: int
    evidence: bytes
    claims_buffer: bytes


def encode_evidence(tee: str, evidence: bytes, claims_buffer: bytes) -> bytes:
    """The evidence extension's value for ``tee`` (sgx/tdx: tag 60000; snp: 0x1a7504)."""
    tag = _TAG_FOR_TEE.get(tee)
    if tag is None:
        raise ValueError(f"no DICE tag for tee {tee!r}; expected sgx, tdx or snp")
    return encode_tagged(tag, evidence, claims_buffer)


def encode_tagged(tag: int, evidence: bytes, claims_buffer: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, [evidence, claims_buffer]))


def decode_evidence(data: bytes) -> DiceEvidence:
    """Parse the evidence extension's value; the tag must be known (:data:`DICE_TAGS`)."""
    doc = _loads(data, "dice evidence")
    if not isinstance(doc, cbor2.CBORTag):
        raise ParseError("dice evidence", "the evidence buffer is not a CBOR tag")
    if doc.tag not in DICE_TAGS:
        raise ParseError("dice evidence", f"unknown CBOR tag {doc.tag} (0x{doc.tag:x})")
    value = doc.value
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise ParseError("dice evidence", "the tagged value is not a [evidence, claims] array")
    evidence, claims = value[0], value[1]
    if not isinstance(evidence, bytes) or not isinstance(claims, bytes):
        raise ParseError("dice evidence", "evidence and claims must both be byte strings")
    return DiceEvidence(doc.tag, evidence, claims)


# ------------------------------------------------------------------------ endorsements

#: The entries after VERSION, in order (Open Enclave's ``oe_sgx_endorsements_fields_t``,
#: DCAP ``sgx_ql_qve_collateral_t``); CREATION_DATETIME is optional.
ENDORSEMENT_FIELDS: Final = (
    "tcb_info",
    "tcb_info_issuer_chain",
    "pck_crl",
    "root_ca_crl",
    "pck_crl_issuer_chain",
    "qe_identity",
    "qe_identity_issuer_chain",
)


@dataclass(frozen=True)
class Endorsements:
    """The DCAP collateral of the endorsements extension (raw bytes as rats-tls copies them
    from ``sgx_ql_qve_collateral_t``, C strings keeping their trailing NUL)."""

    version: int
    tcb_info: bytes
    tcb_info_issuer_chain: bytes
    pck_crl: bytes
    root_ca_crl: bytes
    pck_crl_issuer_chain: bytes
    qe_identity: bytes
    qe_identity_issuer_chain: bytes
    creation_datetime: bytes | None = None


@dataclass(frozen=True)
class _Uint32:
    """A uint that cbor2 writes with a 32-bit head (major type 0, additional info 26)."""

    value: int


def _uint32_default(encoder: cbor2.CBOREncoder, value: object) -> None:
    if not isinstance(value, _Uint32):
        raise cbor2.CBOREncodeError(f"cannot encode {type(value).__name__}")
    encoder.write(b"\x1a" + struct.pack(">I", value.value))


def encode_endorsements(endorsements: Endorsements, tag: int = TAG_INTEL_QUOTE) -> bytes:
    """``tag([uint32 VERSION, bstr × 7 [, bstr CREATION_DATETIME]])``."""
    if not 0 <= endorsements.version <= 0xFFFFFFFF:
        raise ValueError("endorsements VERSION must fit 32 bits")
    items: list[object] = [_Uint32(endorsements.version)]
    items += [getattr(endorsements, name) for name in ENDORSEMENT_FIELDS]
    if endorsements.creation_datetime is not None:
        items.append(endorsements.creation_datetime)
    return cbor2.dumps(cbor2.CBORTag(tag, items), default=_uint32_default)


def decode_endorsements(data: bytes) -> Endorsements:
    """Parse the endorsements extension's value.  As rats-tls requires, the tag is 60000,
    there are 8 or 9 entries and VERSION has a 32-bit head; the buffer must be in the form
    rats-tls writes (checked by re-encoding)."""
    doc = _loads(data, "dice endorsements")
    if not isinstance(doc, cbor2.CBORTag) or doc.tag != TAG_INTEL_QUOTE:
        raise ParseError("dice endorsements", "not a CBOR tag 60000")
    items = doc.value
    if not isinstance(items, list | tuple) or len(items) not in (8, 9):
        raise ParseError("dice endorsements", "not an array of 8 or 9 entries")
    version = items[0]
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**32:
        raise ParseError("dice endorsements", "VERSION is not a 32-bit unsigned integer")
    if not all(isinstance(item, bytes) for item in items[1:]):
        raise ParseError("dice endorsements", "every entry after VERSION must be a bstr")
    fields = dict(zip(ENDORSEMENT_FIELDS, items[1:8], strict=True))
    parsed = Endorsements(
        version=version, creation_datetime=items[8] if len(items) == 9 else None, **fields
    )
    if encode_endorsements(parsed) != data:
        raise ParseError(
            "dice endorsements",
            "not in rats-tls's encoding (VERSION needs a 32-bit head; lengths definite, minimal)",
        )
    return parsed


# ----------------------------------------------------- endorsements <-> DCAP collateral

#: sgx_ql_qve_collateral_t major version 3 (as DCAP's quote provider library reports it).
ENDORSEMENTS_VERSION: Final = 3


def _text(value: bytes) -> str:
    """A C string of the collateral (rats-tls copies the trailing NUL) as text."""
    return value.rstrip(b"\x00").decode("utf-8")


def endorsements_collateral(endorsements: Endorsements) -> str:
    """The dcap-qvl ``QuoteCollateralV3`` JSON of an endorsements extension: issuer chains as
    PEM, CRLs (DER, PEM or hex) as hex DER, and TCB info / QE identity split into the exact
    signed text and its signature.  ParseError for collateral that is not DCAP's."""
    from veritee.verifier.collateral.intel import _crl_der, _signed_member, collateral_json

    try:
        tcb_info, tcb_signature, _ = _signed_member(
            endorsements.tcb_info.rstrip(b"\x00"), "tcbInfo", "endorsed TCB info"
        )
        qe_identity, qe_signature, _ = _signed_member(
            endorsements.qe_identity.rstrip(b"\x00"), "enclaveIdentity", "endorsed QE identity"
        )
        entry = {
            "pck_crl_issuer_chain": _text(endorsements.pck_crl_issuer_chain),
            "root_ca_crl": _crl_der(endorsements.root_ca_crl.rstrip(b"\x00"), "root CA CRL")[
                0
            ].hex(),
            "pck_crl": _crl_der(endorsements.pck_crl.rstrip(b"\x00"), "PCK CRL")[0].hex(),
            "tcb_info_issuer_chain": _text(endorsements.tcb_info_issuer_chain),
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_signature,
            "qe_identity_issuer_chain": _text(endorsements.qe_identity_issuer_chain),
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_signature,
        }
    except UnicodeDecodeError as exc:
        raise ParseError("dice endorsements", f"an issuer chain is not text: {exc}") from exc
    return collateral_json(entry)


def endorsements_from_collateral(collateral: str) -> Endorsements:
    """The endorsements for dcap-qvl ``QuoteCollateralV3`` JSON, as rats-tls writes them from
    ``sgx_ql_qve_collateral_t``: PCS bodies and PEM chains as C strings, CRLs as DER."""
    doc = json.loads(collateral)

    def body(member: str, text_key: str, signature_key: str) -> bytes:
        text = f'{{"{member}":{doc[text_key]},"signature":"{doc[signature_key]}"}}'
        return text.encode() + b"\x00"

    return Endorsements(
        version=ENDORSEMENTS_VERSION,
        tcb_info=body("tcbInfo", "tcb_info", "tcb_info_signature"),
        tcb_info_issuer_chain=doc["tcb_info_issuer_chain"].encode() + b"\x00",
        pck_crl=bytes.fromhex(doc["pck_crl"]),
        root_ca_crl=bytes.fromhex(doc["root_ca_crl"]),
        pck_crl_issuer_chain=doc["pck_crl_issuer_chain"].encode() + b"\x00",
        qe_identity=body("enclaveIdentity", "qe_identity", "qe_identity_signature"),
        qe_identity_issuer_chain=doc["qe_identity_issuer_chain"].encode() + b"\x00",
    )
