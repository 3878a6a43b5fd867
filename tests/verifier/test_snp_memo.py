"""The SNP verifier's memo of verified chains: a repeat report skips the chain's RSA checks, and
nothing the memo holds lets a bad report, a foreign or expired chain, a revoked certificate or
another trust root through.

Every test first verifies something good (so the memo holds its chain), then checks that the
bad case still fails at the right step.  The chains are the emulator's test roots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.emulator.amd_pki import PSS, AmdTestRoot, Signer
from veritee.emulator.snp import SnpFields, build_snp_report
from veritee.pem import dump_certificates
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.snp import SnpVerifier
from veritee.verifier.snp_chain import CHAIN_MEMO, clear_chain_memo

ISSUED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
AT = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def root() -> AmdTestRoot:
    return AmdTestRoot.create(product="Milan", now=ISSUED)


@pytest.fixture(scope="module")
def other(root: AmdTestRoot) -> AmdTestRoot:
    """A second test hierarchy with the same names (AMD's) and CHIP_ID, other keys."""
    return AmdTestRoot.create(product="Milan", chip_id=root.chip_id, now=ISSUED)


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    clear_chain_memo()


def report(root: AmdTestRoot, signer: Signer = "vcek", **fields: object) -> bytes:
    return build_snp_report(root, SnpFields(signer=signer, **fields))  # type: ignore[arg-type]


def verifier(
    root: AmdTestRoot,
    chain: Sequence[x509.Certificate] | None = None,
    *,
    arks: Sequence[x509.Certificate] | None = None,
    crls: Sequence[bytes] = (),
    signer: Signer = "vcek",
) -> SnpVerifier:
    certs = chain if chain is not None else (root.vek(signer), root.intermediate(signer), root.ark)
    return SnpVerifier(
        cert_chain=dump_certificates(*certs),
        trusted_arks=[root.ark] if arks is None else arks,
        crls=crls,
    )


def at(when: dt.datetime, **kw: object) -> VerifyOptions:
    return VerifyOptions(at=when, **kw)  # type: ignore[arg-type]


def warm(v: SnpVerifier, evidence: bytes, when: dt.datetime = AT) -> Verdict:
    """Verify a good report twice, so that the second went through the memo."""
    first = v.verify(evidence, at(when))
    assert first.verified, first.error
    hits = CHAIN_MEMO.hits
    second = v.verify(evidence, at(when))
    assert second.verified, second.error
    assert CHAIN_MEMO.hits == hits + 1
    return second


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


def crl(
    issuer: x509.Certificate,
    key: rsa.RSAPrivateKey,
    serials: Sequence[int],
    *,
    this_update: dt.datetime = ISSUED,
    next_update: dt.datetime = ISSUED + dt.timedelta(days=3650),
    pss: padding.PSS = PSS,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
    return builder.sign(key, hashes.SHA384(), rsa_padding=pss).public_bytes(Encoding.DER)


# ====================================================================== negative tests


@pytest.mark.parametrize(
    ("offset", "step"),
    [
        (0x2A0, "report_signature"),  # signature R
        (0x2E8, "report_signature"),  # signature S
        (0x90, "report_signature"),  # MEASUREMENT
        (0x50, "report_signature"),  # REPORT_DATA
        (0x180, "vek_tcb"),  # REPORTED_TCB
        (0x1A0, "chip_id"),  # CHIP_ID
    ],
)
def test_memoised_chain_still_checks_the_report(root: AmdTestRoot, offset: int, step: str) -> None:
    v = verifier(root)
    good = report(root)
    warm(v, good)
    verdict = v.verify(flip(good, offset), at(AT))
    assert not verdict.verified
    assert verdict.step == step


def test_report_signed_by_another_chip(root: AmdTestRoot, other: AmdTestRoot) -> None:
    """Same names, same CHIP_ID and TCB: only the VCEK's key tells the two apart."""
    v = verifier(root)
    warm(v, report(root))
    verdict = v.verify(report(other), at(AT))
    assert (verdict.verified, verdict.step) == (False, "report_signature")


def test_vek_from_another_chain(root: AmdTestRoot, other: AmdTestRoot) -> None:
    warm(verifier(root), report(root))
    warm(verifier(other), report(other))
    # the other root's VCEK presented with this root's ASK and ARK, both ARKs trusted
    mixed = verifier(root, (other.vcek, root.ask, root.ark), arks=[root.ark, other.ark])
    verdict = mixed.verify(report(other), at(AT))
    assert (verdict.verified, verdict.step) == (False, "vek")
    # and this root's ASK under the other ARK
    mixed = verifier(root, (root.vcek, root.ask, other.ark), arks=[other.ark])
    verdict = mixed.verify(report(root), at(AT))
    assert (verdict.verified, verdict.step) == (False, "ask")


@pytest.mark.parametrize(
    ("when", "signer", "step"),
    [
        (ISSUED + dt.timedelta(days=7 * 366), "vcek", "vek"),  # VCEK: 7 years
        (ISSUED + dt.timedelta(days=400), "vlek", "vek"),  # VLEK: 1 year
        (ISSUED - dt.timedelta(days=1), "vcek", "ark"),  # before anything was issued
        (ISSUED + dt.timedelta(days=26 * 366), "vcek", "ark"),  # after the ARK
    ],
)
def test_chain_out_of_validity_at_the_verification_time(
    root: AmdTestRoot, when: dt.datetime, signer: Signer, step: str
) -> None:
    v = verifier(root, signer=signer)
    evidence = report(root, signer)
    warm(v, evidence)
    verdict = v.verify(evidence, at(when))
    assert (verdict.verified, verdict.step) == (False, step)


def test_vek_revoked_by_a_newer_crl(root: AmdTestRoot) -> None:
    evidence = report(root)
    older = crl(root.ask, root.ask_key, [])
    warm(verifier(root, crls=[older]), evidence)
    warm(verifier(root), evidence)
    newer = crl(root.ask, root.ask_key, [root.vcek.serial_number], this_update=AT)
    verdict = verifier(root, crls=[newer]).verify(evidence, at(AT))
    assert (verdict.verified, verdict.step) == (False, "crl")
    assert "revoked" in (verdict.error or "")
    # the older CRL still verifies (its verdict was memoised under its own content)
    assert verifier(root, crls=[older]).verify(evidence, at(AT)).verified


def test_ask_revoked_by_the_ark_crl(root: AmdTestRoot) -> None:
    evidence = report(root)
    warm(verifier(root), evidence)
    revoked = crl(root.ark, root.ark_key, [root.ask.serial_number])
    verdict = verifier(root, crls=[revoked]).verify(evidence, at(AT))
    assert (verdict.verified, verdict.step) == (False, "crl")


def test_crl_not_signed_by_its_issuer(root: AmdTestRoot, other: AmdTestRoot) -> None:
    evidence = report(root)
    warm(verifier(root), evidence)
    forged = crl(root.ask, other.ask_key, [])  # names this root's ASK, signed by another key
    verdict = verifier(root, crls=[forged]).verify(evidence, at(AT))
    assert (verdict.verified, verdict.step) == (False, "crl")


def test_crl_out_of_date_at_the_verification_time(root: AmdTestRoot) -> None:
    evidence = report(root)
    short = crl(root.ask, root.ask_key, [], next_update=AT + dt.timedelta(days=30))
    v = verifier(root, crls=[short])
    warm(v, evidence)
    verdict = v.verify(evidence, at(AT + dt.timedelta(days=31)))
    assert (verdict.verified, verdict.step) == (False, "crl")
    assert v.verify(evidence, at(ISSUED + dt.timedelta(days=1))).verified
    early = crl(root.ask, root.ask_key, [], this_update=AT)
    verdict = verifier(root, crls=[early]).verify(evidence, at(AT - dt.timedelta(days=1)))
    assert (verdict.verified, verdict.step) == (False, "crl")


def test_crl_of_another_issuer_does_not_apply(root: AmdTestRoot, other: AmdTestRoot) -> None:
    """A CRL naming an issuer outside the chain (another generation's ASK) is ignored."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SEV-Genoa")])
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(ISSUED)
        .next_update(ISSUED + dt.timedelta(days=10))
    )
    foreign = builder.sign(other.ask_key, hashes.SHA384(), rsa_padding=PSS)
    v = verifier(root, crls=[foreign.public_bytes(Encoding.DER)])
    assert v.verify(report(root), at(AT)).verified


def test_test_root_verdict_is_not_served_to_the_real_roots(root: AmdTestRoot) -> None:
    evidence = report(root)
    warm(verifier(root), evidence)
    pinned_only = SnpVerifier(cert_chain=dump_certificates(root.vcek, root.ask, root.ark))
    verdict = pinned_only.verify(evidence, at(AT))
    assert (verdict.verified, verdict.step) == (False, "ark")
    # the chain without its ARK: the pinned ARK is the only candidate, and did not sign the ASK
    no_ark = SnpVerifier(cert_chain=dump_certificates(root.vcek, root.ask))
    verdict = no_ark.verify(evidence, at(AT))
    assert (verdict.verified, verdict.step) == (False, "ask")


def test_real_root_verdict_is_not_served_to_a_test_root(root: AmdTestRoot) -> None:
    from pathlib import Path

    vectors = Path(__file__).resolve().parents[1] / "data" / "vectors" / "virtee-sev"
    raw = bytes.fromhex((vectors / "report_milan.hex").read_text().strip())
    vcek = (vectors / "vcek_milan.der").read_bytes()
    when = at(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    pinned = SnpVerifier(cert_chain=vcek)
    assert pinned.verify(raw, when).verified
    assert pinned.verify(raw, when).verified
    test_only = SnpVerifier(cert_chain=vcek, trusted_arks=[root.ark])
    verdict = test_only.verify(raw, when)  # AMD's ASK is not signed by the test ARK
    assert (verdict.verified, verdict.step) == (False, "ask")


def test_emulated_claim_follows_the_root(root: AmdTestRoot) -> None:
    verdict = warm(verifier(root), report(root))
    assert verdict.claims.get("emulated") is True


# ====================================================================== positive tests


@pytest.mark.parametrize("signer", ["vcek", "vlek"])
def test_second_verify_gives_the_same_verdict(root: AmdTestRoot, signer: Signer) -> None:
    v = verifier(root, signer=signer)
    evidence = report(root, signer, report_data=b"\x42" * 64)
    options = at(AT, report_data=b"\x42" * 64)
    first = v.verify(evidence, options)
    second = v.verify(evidence, options)
    assert first.verified
    assert second == first
    assert second.claims == first.claims
    clear_chain_memo()
    assert v.verify(evidence, options) == first


def test_memo_is_shared_by_verifiers_of_the_same_chain(root: AmdTestRoot) -> None:
    evidence = report(root)
    assert verifier(root).verify(evidence, at(AT)).verified
    hits = CHAIN_MEMO.hits
    assert verifier(root).verify(evidence, at(AT)).verified
    assert CHAIN_MEMO.hits == hits + 1


def test_memo_is_bounded(root: AmdTestRoot) -> None:
    v = verifier(root)
    evidence = report(root)
    for day in range(CHAIN_MEMO.max_size + 5):
        reissued = root.reissue(now=ISSUED + dt.timedelta(days=day))
        v = verifier(reissued)
        assert v.verify(evidence, at(AT)).verified
    assert len(CHAIN_MEMO) == CHAIN_MEMO.max_size
