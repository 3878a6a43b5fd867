"""Initdata: the TOML document a pod carries into its TEE, its digest, and its claims.

A format shared by the guest (the Attestation Agent checks it against the TEE) and the
verifier (the Attestation Service recomputes its digest and exposes its claims):

* ``digest = H_algorithm(exact bytes of the TOML document)``; nothing is
  canonicalised, so the digest is of the bytes the guest sees;
* the host binds it at launch into MRCONFIGID (TDX, 48 bytes), HOST_DATA (SNP, 32)
  or CONFIGID (SGX, 64), zero-padded or truncated to the field (kata's
  ``adjust_digest``): :func:`digest_for_tee`;
* kata carries it in the pod annotation ``io.katacontainers.config.hypervisor.cc_init_data``
  as standard base64 of gzip(TOML): :func:`encode_annotation`, :func:`decode_annotation`.
  kata's runtime-rs re-serialises the document it decodes, so hash the bytes that
  reach the guest, not the annotation's.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import tomllib
import zlib
from dataclasses import dataclass
from typing import Any

from veritee.errors import InputError, ParseError

__all__ = [
    "ALGORITHMS",
    "ANNOTATION",
    "MAX_DOCUMENT_BYTES",
    "TEE_FIELDS",
    "VERSION",
    "Initdata",
    "agent_policy_claims",
    "decode_annotation",
    "digest_for_tee",
    "encode_annotation",
    "parse_initdata",
    "resize_digest",
]

VERSION = "0.1.0"
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
# A decoded annotation larger than this is refused (a gzip bomb stops here).  Kubernetes
# caps a pod's annotations at 256 KiB together; a real document (an agent policy of a
# few hundred containers) is far smaller even uncompressed.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
# Where each TEE's launch measurement binds the digest, and that field's size.
TEE_FIELDS: dict[str, tuple[str, int]] = {
    "tdx": ("MRCONFIGID", 48),
    "snp": ("HOST_DATA", 32),
    "sgx": ("CONFIGID", 64),
}
_POLICY_DATA = re.compile(r"policy_data\s*:=\s*\{")


@dataclass(frozen=True)
class Initdata:
    version: str
    algorithm: str
    data: dict[str, str]
    text: str

    @property
    def digest(self) -> bytes:
        return ALGORITHMS[self.algorithm](self.text.encode()).digest()

    def claims(self) -> dict[str, Any]:
        """Trustee's ``init_data_claims``: ``data`` with aa.toml / cdh.toml as JSON objects
        and policy.rego replaced by ``agent_policy_claims`` (its ``policy_data`` object)."""
        out: dict[str, Any] = {}
        for name, value in self.data.items():
            if name in ("aa.toml", "cdh.toml"):
                try:
                    out[name] = tomllib.loads(value)
                except tomllib.TOMLDecodeError:
                    out[name] = value
            elif name == "policy.rego":
                policy = agent_policy_claims(value)
                if policy is not None:
                    out["agent_policy_claims"] = policy
            else:
                out[name] = value
        return out


def parse_initdata(text: str) -> Initdata:
    """Parse an initdata TOML document; ParseError names what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError("initdata", f"not TOML: {exc}") from exc
    version, algorithm, data = doc.get("version"), doc.get("algorithm"), doc.get("data", {})
    if version != VERSION:
        raise ParseError("initdata", f"version must be {VERSION!r}, not {version!r}")
    if algorithm not in ALGORITHMS:
        raise ParseError(
            "initdata", f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}"
        )
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ParseError("initdata", "[data] must map names to strings")
    return Initdata(version=version, algorithm=algorithm, data=dict(data), text=text)


def agent_policy_claims(rego: str) -> dict[str, Any] | None:
    """The JSON object after the first ``policy_data := {`` in a kata agent policy, if it parses."""
    match = _POLICY_DATA.search(rego)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rego[match.end() - 1 :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- binding at launch -------------------------------------------------------------------------


def resize_digest(digest: bytes, size: int) -> bytes:
    """kata's ``adjust_digest``: the first ``size`` bytes, zero-padded when shorter."""
    return digest[:size].ljust(size, b"\0")


def digest_for_tee(initdata: Initdata, tee: str) -> tuple[str, bytes]:
    """The launch-time field ``tee`` binds initdata into, and the digest resized to it:
    TDX ``MRCONFIGID`` (48), SNP ``HOST_DATA`` (32), SGX ``CONFIGID`` (64)."""
    found = TEE_FIELDS.get(tee)
    if found is None:
        raise InputError(
            f"{tee!r} binds no initdata at launch; expected one of {', '.join(TEE_FIELDS)}"
        )
    name, size = found
    return name, resize_digest(initdata.digest, size)


# --- the kata pod annotation -------------------------------------------------------------------


def encode_annotation(text: str) -> str:
    """The annotation value for ``text``: standard base64 of gzip(UTF-8 bytes).

    The gzip header carries no time, so one document always gives one value.
    """
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode("ascii")


def decode_annotation(value: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """The TOML text in an annotation value; ParseError says which layer is broken.

    Decompression stops after ``max_bytes``: a larger document is refused.
    """
    try:
        packed = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParseError("initdata annotation", f"not standard base64: {exc}") from exc
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        data = inflater.decompress(packed, max_bytes + 1)
    except zlib.error as exc:
        raise ParseError("initdata annotation", f"not gzip data: {exc}") from exc
    if len(data) > max_bytes:
        raise ParseError(
            "initdata annotation", f"the document is larger than {max_bytes} bytes uncompressed"
        )
    if not inflater.eof:
        raise ParseError("initdata annotation", "the gzip data is truncated")
    if inflater.unused_data:
        raise ParseError("initdata annotation", "bytes follow the gzip data")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("initdata annotation", f"the document is not UTF-8: {exc}") from exc
