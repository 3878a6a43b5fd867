"""The PCK certificate chain inside a quote, and its Intel SGX extension.

The extension (OID 1.2.840.113741.1.13.1) is a SEQUENCE of SEQUENCE{OID, value};
asn1crypto parses it generically.  Results are cached by the chain's bytes: a
platform presents the same chain in every quote.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from asn1crypto import core
from cryptography import x509

from veritee.errors import ParseError
from veritee.pem import load_certificates

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_P = SGX_EXTENSION_OID + "."


@dataclass(frozen=True)
class PckInfo:
    chain: tuple[x509.Certificate, ...]
    ca: Literal["platform", "processor"]
    ppid: bytes
    cpu_svn: bytes
    pce_svn: int
    tcb_components: tuple[int, ...]
    pce_id: bytes
    fmspc: str
    sgx_type: int
    platform_instance_id: bytes | None
    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _pairs(seq: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index in range(len(seq)):
        item = seq[index]
        out[item[0].dotted] = item[1]
    return out


def _need(fields: dict[str, Any], suffix: str) -> Any:
    value = fields.get(_P + suffix)
    if value is None:
        raise ParseError("pck certificate", f"SGX extension lacks {_P + suffix}")
    return value


@functools.lru_cache(maxsize=512)
def parse_pck_chain(pem: bytes) -> PckInfo:
    """Parse a quote's PCK chain (leaf first) and the leaf's SGX extension."""
    chain = tuple(load_certificates(pem))
    leaf = chain[0]
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound as exc:
        raise ParseError("pck certificate", "no Intel SGX extension") from exc
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        raise ParseError("pck certificate", "unexpected SGX extension type")
    try:
        fields = _pairs(core.load(ext.value.value))
        tcb = _pairs(_need(fields, "2"))
        components = tuple(int(tcb[f"{_P}2.{i}"].native) for i in range(1, 17))
        config = fields.get(_P + "7")
        flags = _pairs(config) if config is not None else {}
        info = PckInfo(
            chain=chain,
            ca="platform" if "Platform" in leaf.issuer.rfc4514_string() else "processor",
            ppid=bytes(_need(fields, "1").native),
            cpu_svn=bytes(tcb[_P + "2.18"].native),
            pce_svn=int(tcb[_P + "2.17"].native),
            tcb_components=components,
            pce_id=bytes(_need(fields, "3").native),
            fmspc=bytes(_need(fields, "4").native).hex().upper(),
            sgx_type=_enum(_need(fields, "5")),
            platform_instance_id=bytes(fields[_P + "6"].native) if _P + "6" in fields else None,
            dynamic_platform=_bool(flags.get(_P + "7.1")),
            cached_keys=_bool(flags.get(_P + "7.2")),
            smt_enabled=_bool(flags.get(_P + "7.3")),
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ParseError("pck certificate", f"malformed SGX extension: {exc}") from exc
    return info


def _enum(value: Any) -> int:
    return int.from_bytes(value.contents, "big")


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value.native)
