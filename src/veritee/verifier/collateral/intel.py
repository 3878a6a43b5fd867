"""Intel DCAP collateral: from a file, or from a PCCS / Intel PCS (API v4), cached per item.

Both sources return dcap-qvl ``QuoteCollateralV3`` JSON text.  ``tcb_info`` and
``qe_identity`` are the exact substrings of the PCS bodies that Intel signed,
never re-serialised JSON: a re-serialisation would break the signature.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, get_args
from urllib.parse import unquote, urlsplit

import dcap_qvl
import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.errors import CollateralError, CollateralMissing, InputError, ParseError
from veritee.pem import load_certificates
from veritee.verifier.collateral.anchor import Anchor, anchor_of_chain
from veritee.verifier.collateral.cache import (
    CollateralCache,
    Fetched,
    Obtained,
    Step,
    obtain,
    window_of,
)
from veritee.verifier.collateral.http import HttpStatusError, Reply, http_get
from veritee.verifier.intel_root import intel_root_ca

__all__ = [
    "FIELDS",
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "CaType",
    "FileCollateral",
    "IntelCollateralSource",
    "PcsCollateral",
    "Tee",
    "fmspc_and_ca_from_quote",
]

Tee = Literal["tdx", "sgx"]
CaType = Literal["platform", "processor"]
Update = Literal["standard", "early"]

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

# QuoteCollateralV3 keys, in dcap-qvl's order.
FIELDS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)

_FMSPC = re.compile(r"\A[0-9A-Fa-f]{12}\Z")
_HEX = re.compile(rb"\A[0-9A-Fa-f]+\Z")
_TCB_INFO_ID: dict[Tee, str] = {"tdx": "TDX", "sgx": "SGX"}
_QE_ID: dict[Tee, str] = {"tdx": "TD_QE", "sgx": "QE"}
_TEE_BY_ID: dict[str, Tee] = {"TDX": "tdx", "SGX": "sgx"}
_CA_BY_NAME: dict[str, CaType] = {"platform": "platform", "processor": "processor"}
_TCB_CHAIN_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
_QE_CHAIN_HEADER = "SGX-Enclave-Identity-Issuer-Chain"
_CRL_CHAIN_HEADER = "SGX-PCK-CRL-Issuer-Chain"


class IntelCollateralSource(Protocol):
    """Where the Intel verifier gets collateral for one platform."""

    def collateral_for(
        self, *, tee: Tee, fmspc: str, ca: CaType, at: dt.datetime, root: bytes | None = None
    ) -> str:
        """QuoteCollateralV3 JSON for ``fmspc`` and the PCK ``ca``, valid as of ``at``,
        under ``root`` (the DER of the root the quote's PCK chain ends in; default: the
        pinned Intel SGX Root CA)."""
        ...


def fmspc_and_ca_from_quote(raw: bytes) -> tuple[str, CaType]:
    """The FMSPC (upper-case hex) and PCK CA type from the PCK certificate inside a quote."""
    try:
        quote = dcap_qvl.parse_quote(raw)
        fmspc = str(quote.fmspc()).upper()
        ca = str(quote.ca()).lower()
    except (ValueError, RuntimeError) as exc:
        raise ParseError(
            "intel quote", f"cannot read FMSPC/CA from the PCK certificate: {exc}"
        ) from exc
    if ca not in _CA_BY_NAME:
        raise ParseError("intel quote", f"unknown PCK CA type {ca!r}")
    return normalize_fmspc(fmspc), _CA_BY_NAME[ca]


def normalize_fmspc(fmspc: str) -> str:
    """``fmspc`` as 12 upper-case hex digits; anything else is a :class:`ParseError`."""
    if not _FMSPC.match(fmspc):
        raise ParseError("fmspc", f"expected 12 hex digits, got {fmspc!r}")
    return fmspc.upper()


# --------------------------------------------------------------------------- file source


class FileCollateral:
    """Collateral from a file: one QuoteCollateralV3 JSON object, or a JSON list (a bundle) of them.

    From a bundle the entry whose TCB info matches the TEE and FMSPC (and whose
    PCK CRL is from the requested CA) is picked.  A single object must match too,
    so that a wrong file fails here, by name, rather than deep in verification.
    """

    def __init__(self, path: str | Path, *, recheck: float = 1.0) -> None:
        """``recheck``: seconds between looks at the file's size and mtime; a file that
        changes is read again at the next look (a stat per quote costs more than the rest of
        this lookup)."""
        self.path = Path(path)
        self._recheck = recheck
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self._answers: dict[tuple[str, str, str], str] = {}

    def collateral_for(
        self, *, tee: Tee, fmspc: str, ca: CaType, at: dt.datetime, root: bytes | None = None
    ) -> str:
        """``root`` is not used to choose: a file is explicit, and the verifier checks
        what it holds against the quote's root."""
        fmspc = normalize_fmspc(fmspc)
        now = time.monotonic()
        if self._stamp is None or now - self._checked >= self._recheck:
            stamp = self._file_stamp()
            self._checked = now
            if stamp != self._stamp:
                self._stamp, self._answers = stamp, {}
        key = (tee, fmspc, ca)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._find(tee, fmspc, ca)
        return answer

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise InputError(f"cannot read collateral file {self.path}: {exc.strerror}") from exc
        return st.st_mtime_ns, st.st_size

    def _find(self, tee: Tee, fmspc: str, ca: CaType) -> str:
        held: list[str] = []
        for entry in self._load():
            entry_tee, entry_fmspc, entry_ca = _describe(entry)
            held.append(f"{entry_tee or '?'} {entry_fmspc or '?'} {entry_ca or '?'}")
            if entry_tee not in (None, tee) or entry_fmspc not in (None, fmspc):
                continue
            if entry_ca not in (None, ca):
                continue
            return collateral_json(entry)
        raise CollateralMissing(
            f"{tee} tcbInfo for FMSPC {fmspc} ({ca} CA)",
            f"not in {self.path} (it holds: {', '.join(held) or 'nothing'})",
        )

    def _load(self) -> list[dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read collateral file {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError("collateral file", f"not JSON: {exc.msg}", exc.pos) from exc
        entries = data if isinstance(data, list) else [data]
        return [
            _checked(entry, f"collateral file entry {i + 1}") for i, entry in enumerate(entries)
        ]


def collateral_json(entry: Mapping[str, str]) -> str:
    """QuoteCollateralV3 JSON text with exactly the dcap-qvl keys, in dcap-qvl's order."""
    return json.dumps({name: entry[name] for name in FIELDS})


def _checked(entry: object, what: str) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise ParseError(what, "expected a JSON object")
    missing = [name for name in FIELDS if not isinstance(entry.get(name), str)]
    if missing:
        raise ParseError(what, f"missing or non-string keys: {', '.join(missing)}")
    return {name: str(entry[name]) for name in FIELDS}


def _describe(entry: Mapping[str, str]) -> tuple[Tee | None, str | None, CaType | None]:
    """(tee, FMSPC, CA) an entry is for, where it says so."""
    tee: Tee | None = None
    fmspc: str | None = None
    try:
        info = json.loads(entry["tcb_info"])
    except json.JSONDecodeError:
        info = None
    if isinstance(info, dict):
        tee = _TEE_BY_ID.get(str(info.get("id", "")).upper())
        raw_fmspc = info.get("fmspc")
        fmspc = raw_fmspc.upper() if isinstance(raw_fmspc, str) else None
    return tee, fmspc, _crl_ca(entry["pck_crl"])


def _crl_ca(crl_hex: str) -> CaType | None:
    """Platform/Processor from the PCK CRL issuer's CN, when it is Intel's naming."""
    try:
        crl = x509.load_der_x509_crl(bytes.fromhex(crl_hex))
    except ValueError:
        return None
    names = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    if "Platform" in cn:
        return "platform"
    if "Processor" in cn:
        return "processor"
    return None


# --------------------------------------------------------------------------- PCS / PCCS source


class PcsCollateral:
    """Collateral from a PCCS or Intel PCS (API v4), each item cached until it expires.

    ``base_url`` is the server root (a trailing ``/sgx/certification/v4`` is
    dropped).  The root CA CRL comes from the PCCS-only ``/sgx/certification/v4/rootcacrl``
    (hex body) and, when that is 404 or the server is Intel PCS, from
    ``root_ca_crl_url`` (DER).  ``update`` selects Intel's "standard" or "early"
    TCB recovery stream (``None`` omits the parameter).  With ``offline`` only
    the cache is consulted.  A ``client`` passed in is used (its pool, proxies,
    timeouts) and left open; without one each request uses a short-lived
    client, so there is nothing to close.
    """

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        cache: CollateralCache | None = None,
        offline: bool = False,
        client: httpx.Client | None = None,
        root_ca_crl_url: str | None = INTEL_ROOT_CA_CRL_URL,
        update: Update | None = "standard",
    ) -> None:
        self.base_url = _server_root(base_url)
        self.cache = cache
        self.offline = offline
        self.root_ca_crl_url = root_ca_crl_url
        self.update = update
        self._client = client

    def collateral_for(
        self, *, tee: Tee, fmspc: str, ca: CaType, at: dt.datetime, root: bytes | None = None
    ) -> str:
        merged: dict[str, str] = {}
        missing: list[CollateralMissing] = []
        for step in self.steps(tee=tee, fmspc=fmspc, ca=ca, root=root):
            try:
                merged.update(_fragment(step.run(at).value, step.what))
            except CollateralMissing as exc:  # offline: name everything that is missing
                missing.append(exc)
        if len(missing) == 1:
            raise missing[0]
        if missing:
            reasons = dict.fromkeys(exc.detail for exc in missing)
            raise CollateralMissing(", ".join(exc.what for exc in missing), "; ".join(reasons))
        return collateral_json(merged)

    def steps(
        self, *, tee: Tee, fmspc: str, ca: CaType, root: bytes | None = None
    ) -> list[Step]:
        """The four items a quote needs, each fetchable (or served from cache) on its own.

        Every item must chain to ``root`` (DER; default: the pinned Intel SGX Root
        CA): the cache is looked up under it, and an item from the server that
        chains elsewhere is refused, naming the root it does chain to.
        """
        if tee not in get_args(Tee):
            raise ParseError("tee", f"expected tdx or sgx, got {tee!r}")
        if ca not in get_args(CaType):
            raise ParseError("ca", f"expected platform or processor, got {ca!r}")
        fmspc = normalize_fmspc(fmspc)
        try:
            root_cert = x509.load_der_x509_certificate(root or intel_root_ca())
        except ValueError as exc:
            raise ParseError("intel root", f"not a DER certificate: {exc}") from exc
        anchor = Anchor.of(root_cert)
        stream = self.update or "default"

        def step(kind: str, key: str, what: str, fetch: Callable[[str], Fetched]) -> Step:
            def run(at: dt.datetime) -> Obtained:
                return obtain(
                    self.cache,
                    kind=kind,
                    key=key,
                    what=what,
                    at=at,
                    offline=self.offline,
                    fetch=lambda: fetch(what),
                    roots=(anchor,),
                )

            return Step(what, run)

        return [
            step("intel-pck-crl", ca, f"PCK CRL ({ca} CA)", lambda what: self._pck_crl(ca, what)),
            step(
                "intel-root-ca-crl",
                "sgx-root-ca",
                "Intel root CA CRL",
                lambda what: self._root_crl(root_cert, what),
            ),
            step(
                "intel-tcb-info",
                f"{tee}/{fmspc}/{stream}",
                f"{tee} tcbInfo for FMSPC {fmspc}",
                lambda what: self._tcb_info(tee, fmspc, what),
            ),
            step(
                "intel-qe-identity",
                f"{tee}/{stream}",
                f"{tee} QE identity",
                lambda what: self._qe_identity(tee, what),
            ),
        ]

    # -- the four fetches

    def _pck_crl(self, ca: CaType, what: str) -> Fetched:
        reply = self._get(f"/sgx/certification/v4/pckcrl?ca={ca}&encoding=der", what)
        chain_pem, certs = _issuer_chain(reply, (_CRL_CHAIN_HEADER,), what)
        der, crl = _crl_der(reply.body, what)
        anchor = anchor_of_chain(certs, what)
        if not crl.is_signature_valid(certs[0].public_key()):  # type: ignore[arg-type]
            raise CollateralError(what, f"{reply.url}: the CRL is not signed by its issuer chain")
        valid_from, expires = window_of(
            certs, not_before=[crl.last_update_utc], not_after=[crl.next_update_utc]
        )
        fragment = {"pck_crl_issuer_chain": chain_pem, "pck_crl": der.hex()}
        return Fetched(_dumps(fragment), expires, valid_from, anchor, reply.url)

    def _root_crl(self, root: x509.Certificate, what: str) -> Fetched:
        reply = self._root_crl_reply(what)
        der, crl = _crl_der(reply.body, what)
        anchor = Anchor.of(root)
        if not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
            raise CollateralError(
                what,
                f"{reply.url} served a root CA CRL issued by {_crl_issuer(crl)}, which is "
                f"not signed by {anchor.describe()}; it was not used or cached",
            )
        valid_from, expires = window_of(
            (), not_before=[crl.last_update_utc], not_after=[crl.next_update_utc]
        )
        return Fetched(_dumps({"root_ca_crl": der.hex()}), expires, valid_from, anchor, reply.url)

    def _root_crl_reply(self, what: str) -> Reply:
        if urlsplit(self.base_url).hostname != urlsplit(INTEL_PCS_URL).hostname:
            try:
                return self._get("/sgx/certification/v4/rootcacrl", what)
            except HttpStatusError as exc:
                if exc.status != httpx.codes.NOT_FOUND or self.root_ca_crl_url is None:
                    raise
        if self.root_ca_crl_url is None:
            raise CollateralError(what, "no root CA CRL URL configured")
        return http_get(self._client, self.root_ca_crl_url, what=what)

    def _tcb_info(self, tee: Tee, fmspc: str, what: str) -> Fetched:
        reply = self._get(f"/{tee}/certification/v4/tcb?fmspc={fmspc}{self._update('&')}", what)
        chain_pem, certs = _issuer_chain(reply, _TCB_CHAIN_HEADERS, what)
        raw, signature, info = _signed_member(reply.body, "tcbInfo", what)
        anchor = anchor_of_chain(certs, what)
        if str(info.get("id", "")).upper() != _TCB_INFO_ID[tee]:
            raise CollateralError(what, f"{reply.url} returned tcbInfo id {info.get('id')!r}")
        if str(info.get("fmspc", "")).upper() != fmspc:
            raise CollateralError(what, f"{reply.url} returned FMSPC {info.get('fmspc')!r}")
        valid_from, expires = window_of(
            certs,
            not_before=[_timestamp(info, "issueDate", what)],
            not_after=[_timestamp(info, "nextUpdate", what)],
        )
        fragment = {
            "tcb_info_issuer_chain": chain_pem,
            "tcb_info": raw,
            "tcb_info_signature": signature,
        }
        return Fetched(_dumps(fragment), expires, valid_from, anchor, reply.url)

    def _qe_identity(self, tee: Tee, what: str) -> Fetched:
        reply = self._get(f"/{tee}/certification/v4/qe/identity{self._update('?')}", what)
        chain_pem, certs = _issuer_chain(reply, (_QE_CHAIN_HEADER,), what)
        raw, signature, identity = _signed_member(reply.body, "enclaveIdentity", what)
        anchor = anchor_of_chain(certs, what)
        if identity.get("id") != _QE_ID[tee]:
            raise CollateralError(what, f"{reply.url} returned identity {identity.get('id')!r}")
        valid_from, expires = window_of(
            certs,
            not_before=[_timestamp(identity, "issueDate", what)],
            not_after=[_timestamp(identity, "nextUpdate", what)],
        )
        fragment = {
            "qe_identity_issuer_chain": chain_pem,
            "qe_identity": raw,
            "qe_identity_signature": signature,
        }
        return Fetched(_dumps(fragment), expires, valid_from, anchor, reply.url)

    # -- plumbing

    def _update(self, sep: str) -> str:
        return "" if self.update is None else f"{sep}update={self.update}"

    def _get(self, path: str, what: str) -> Reply:
        return http_get(self._client, self.base_url + path, what=what)


def _server_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return re.sub(r"/sgx/certification/v\d+\Z", "", root)


def _dumps(fragment: dict[str, str]) -> bytes:
    return json.dumps(fragment, separators=(",", ":")).encode()


def _fragment(value: bytes, what: str) -> dict[str, str]:
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"cached {what}", f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ParseError(f"cached {what}", "expected an object of strings")
    return {str(k): str(v) for k, v in data.items()}


def _issuer_chain(
    reply: Reply, names: tuple[str, ...], what: str
) -> tuple[str, list[x509.Certificate]]:
    for name in names:
        value = reply.headers.get(name)
        if value:
            pem = unquote(value)
            try:
                return pem, load_certificates(pem.encode())
            except ParseError as exc:
                raise ParseError(what, f"{name} header: {exc}") from exc
    raise CollateralError(what, f"{reply.url} sent no {' or '.join(names)} header")


def _crl_issuer(crl: x509.CertificateRevocationList) -> str:
    """The CRL's issuer name and, when it names one, the id of the key that signed it."""
    name = f"'{crl.issuer.rfc4514_string()}'"
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return name
    return f"{name} (key id {aki.key_identifier.hex()})" if aki.key_identifier else name


def _crl_der(body: bytes, what: str) -> tuple[bytes, x509.CertificateRevocationList]:
    """A CRL body as DER, whether it came as DER, PEM or hex text (PCCS rootcacrl)."""
    data = body.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
            return crl.public_bytes(Encoding.DER), crl
        if _HEX.match(data) and len(data) % 2 == 0:
            der = bytes.fromhex(data.decode("ascii"))
        else:
            der = body
        return der, x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise ParseError(what, f"not a CRL (DER, PEM or hex): {exc}") from exc


def _signed_member(body: bytes, member: str, what: str) -> tuple[str, str, dict[str, Any]]:
    """(exact signed text of ``member``, signature hex, parsed member) from a PCS body."""
    try:
        text = body.decode("utf-8")
        whole = json.loads(text)
    except UnicodeDecodeError as exc:
        raise ParseError(what, "body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise ParseError(what, f"body is not JSON: {exc.msg}", exc.pos) from exc
    shape = f'expected {{"{member}": {{...}}, "signature": "<hex>"}}'
    if not isinstance(whole, dict) or not isinstance(whole.get(member), dict):
        raise ParseError(what, shape)
    signature = whole.get("signature")
    if not isinstance(signature, str) or not re.fullmatch(r"[0-9A-Fa-f]{128}", signature):
        raise ParseError(what, f"{shape}; the signature is not 64 bytes of hex")
    start = re.search(rf'"{member}"\s*:\s*', text)
    if start is None:  # pragma: no cover - json.loads found the key
        raise ParseError(what, shape)
    try:
        value, end = json.JSONDecoder().raw_decode(text, start.end())
    except json.JSONDecodeError:
        value, end = None, 0
    if value != whole[member]:
        raise ParseError(what, f"cannot locate the signed {member} text unambiguously")
    return text[start.end() : end], signature, whole[member]


def _timestamp(doc: Mapping[str, Any], name: str, what: str) -> dt.datetime:
    value = doc.get(name)
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ParseError(what, f"{name} is not an ISO 8601 time: {value!r}") from exc
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
