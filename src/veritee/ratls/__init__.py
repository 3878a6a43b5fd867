"""RA-TLS: TLS certificates that carry TEE evidence binding their key (Inclavare rats-tls,
the CCC Interoperable RA-TLS format, Gramine and the Intel SGX SDK).

:mod:`~veritee.ratls.cert` makes and reads the certificates, :mod:`~veritee.ratls.verify`
checks them with veritee's own verifiers, :mod:`~veritee.ratls.policy` judges the peer, and
:mod:`~veritee.ratls.formats` holds the wire formats (OIDs, CBOR).
"""

from __future__ import annotations

from veritee.ratls.cert import RatlsIdentity, extract_evidence, make_identity, plain_identity
from veritee.ratls.policy import RatlsPolicy, load_policy
from veritee.ratls.quoter import AttesterQuoter, EmulatedQuoter, Quoter
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier

__all__ = [
    "AttesterQuoter",
    "EmulatedQuoter",
    "Quoter",
    "RatlsError",
    "RatlsIdentity",
    "RatlsPeer",
    "RatlsPolicy",
    "RatlsVerifier",
    "extract_evidence",
    "load_policy",
    "make_identity",
    "plain_identity",
]
