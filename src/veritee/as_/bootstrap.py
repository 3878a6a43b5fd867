"""Assemble an Attestation Service from its settings: stores, keys, policies, verifiers.

On first start in a data directory this creates the token signing key (and a
self-signed certificate for it) and the admin credentials, and reports where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veritee import __version__
from veritee.as_.config import AsSettings
from veritee.as_.service import AttestationService
from veritee.auth.admin import AdminCredentials, ensure_admin_credentials
from veritee.policy.attestation import AttestationPolicies
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import KeyValueStore
from veritee.store.postgres import open_store
from veritee.token.ear import EarSettings
from veritee.token.signer import TokenSigner
from veritee.verifier.base import Verifier
from veritee.verifier.registry import VerifierSettings, build_verifier

TOKEN_KEY_DIR = "token"  # noqa: S105 (a directory name)


@dataclass(frozen=True)
class AsComponents:
    service: AttestationService
    rvps: ReferenceValueStore
    store: KeyValueStore
    admin: AdminCredentials
    signer_created: bool


def _signer(settings: AsSettings) -> tuple[TokenSigner, bool]:
    if settings.token_key is not None:
        chain = settings.token_cert_chain.read_bytes() if settings.token_cert_chain else None
        return TokenSigner.load(settings.token_key.read_bytes(), chain), False
    directory = settings.data_dir / TOKEN_KEY_DIR
    key = directory / "token.key"
    if key.exists():
        chain_path = directory / "token-cert-chain.pem"
        chain = chain_path.read_bytes() if chain_path.exists() else None
        return TokenSigner.load(key.read_bytes(), chain), False
    signer = TokenSigner.generate(settings.token_alg)
    signer.save(directory)
    return signer, True


def verifier_settings(settings: AsSettings) -> VerifierSettings:
    return VerifierSettings(
        collateral_file=settings.collateral_file,
        pccs_url=settings.pccs_url,
        kds_url=settings.kds_url,
        cache_path=settings.data_dir / "collateral.db",
        trust_root=settings.trust_root,
        allow_sample=settings.allow_sample,
    )


def build_attestation_service(settings: AsSettings) -> AsComponents:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url())
    rvps = ReferenceValueStore(store)
    policies = AttestationPolicies(store, rvps)
    if settings.policy_dir is not None:
        policies.load_directory(settings.policy_dir)
    signer, created = _signer(settings)
    vsettings = verifier_settings(settings)

    def factory(tee: str) -> Verifier:
        return build_verifier(tee, vsettings)

    ear = EarSettings(profile=settings.profile, issuer=settings.issuer,
                      developer=settings.developer,
                      build=settings.build or f"veritee {__version__}",
                      duration_s=settings.duration_s, verbose=settings.verbose_token)
    service = AttestationService(verifier_factory=factory, policies=policies, signer=signer,
                                 ear=ear, allow_debug=settings.allow_debug)
    admin = ensure_admin_credentials(settings.data_dir)
    return AsComponents(service, rvps, store, admin, created)


def describe_first_start(components: AsComponents, data_dir: Path) -> list[str]:
    lines = []
    if components.admin.created:
        lines.append(f"admin key created: {components.admin.key_path}")
        lines.append(f"admin token (Bearer) written to: {components.admin.token_path}")
    if components.signer_created:
        lines.append(f"token signing key created in: {data_dir / TOKEN_KEY_DIR}")
    return lines
