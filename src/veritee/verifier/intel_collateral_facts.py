"""Facts about an Intel collateral bundle that Trustee reports as DCAP supplemental claims.

Computed once per (bundle, PCK chain, root) and cached: dates and CRL numbers do
not change between quotes of the same platform.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee.errors import ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier.collateral.anchor import Anchor


@dataclass(frozen=True)
class CollateralFacts:
    earliest_issue_date: str
    latest_issue_date: str
    earliest_expiration_date: str
    pck_crl_num: int
    root_ca_crl_num: int
    root_key_id: str
    tcb_info_text: str
    qe_identity_text: str


def _fmt(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0
    return int(number)


def _check_root(
    coll: dict[str, str], root_crl: x509.CertificateRevocationList, root: x509.Certificate
) -> None:
    """Every issuer chain in the bundle ends in ``root``, and ``root`` signed the root CA CRL:
    collateral made under another root (an emulator's test root with the same FMSPC, say)
    is refused by name rather than failing somewhere inside the quote verification."""
    expected = Anchor.of(root)
    for name in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
        chain = load_certificates(coll[name].encode())
        found = Anchor.of(chain[-1])
        if found.fingerprint != expected.fingerprint:
            raise VerificationError(
                "collateral",
                f"the collateral's {name} ends in {found.describe()}; the quote chains to "
                f"{expected.describe()}",
            )
    if not root_crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise VerificationError(
            "crl",
            f"the collateral's root CA CRL is not signed by {expected.describe()}, "
            "the root the quote chains to",
        )


@functools.lru_cache(maxsize=256)
def collateral_facts(
    collateral_text: str, pck_chain_pem: bytes, root_der: bytes
) -> CollateralFacts:
    """Dates, CRL numbers and the root key id of one bundle, as dcap-qvl reckons them."""
    try:
        coll = json.loads(collateral_text)
        tcb_info = json.loads(coll["tcb_info"])
        qe_identity = json.loads(coll["qe_identity"])
        pck_crl = x509.load_der_x509_crl(bytes.fromhex(coll["pck_crl"]))
        root_crl = x509.load_der_x509_crl(bytes.fromhex(coll["root_ca_crl"]))
        certs = [
            *load_certificates(coll["tcb_info_issuer_chain"].encode()),
            *load_certificates(coll["qe_identity_issuer_chain"].encode()),
            *load_certificates(pck_chain_pem),
        ]
        root = x509.load_der_x509_certificate(root_der)
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError("intel collateral", f"malformed bundle: {exc}") from exc
    _check_root(coll, root_crl, root)
    issued = [
        pck_crl.last_update_utc,
        root_crl.last_update_utc,
        _parse_date(tcb_info["issueDate"]),
        _parse_date(qe_identity["issueDate"]),
        *(c.not_valid_before_utc for c in certs),
    ]
    expires = [
        _parse_date(tcb_info["nextUpdate"]),
        _parse_date(qe_identity["nextUpdate"]),
        *(c.not_valid_after_utc for c in certs),
    ]
    expires += [crl.next_update_utc for crl in (pck_crl, root_crl) if crl.next_update_utc]
    point = root.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return CollateralFacts(
        earliest_issue_date=_fmt(min(issued)),
        latest_issue_date=_fmt(max(issued)),
        earliest_expiration_date=_fmt(min(expires)),
        pck_crl_num=_crl_number(pck_crl),
        root_ca_crl_num=_crl_number(root_crl),
        root_key_id=hashlib.sha384(point).hexdigest(),
        tcb_info_text=coll["tcb_info"],
        qe_identity_text=coll["qe_identity"],
    )
