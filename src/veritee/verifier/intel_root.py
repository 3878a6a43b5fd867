"""The pinned Intel SGX Root CA, the one anchor for every real Intel quote and its collateral."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


@functools.cache
def intel_root_ca() -> bytes:
    """The pinned Intel SGX Root CA certificate (DER), checked against its fingerprint."""
    der = resources.files("veritee.verifier.roots").joinpath("intel_sgx_root_ca.der").read_bytes()
    if hashlib.sha256(der).hexdigest() != INTEL_ROOT_SHA256:
        raise RuntimeError("packaged Intel SGX Root CA does not match its pinned fingerprint")
    return der
