"""``[ratls]`` in kbs-config.toml: the KBS's RA-TLS key broker (Verdictd's protocol).

Trustee has no such section; veritee adds it (Trustee ignores unknown top-level keys)::

    [ratls]
    listen = "127.0.0.1:1234"          # Verdictd's default; `veritee serve --ratls-listen` wins
    # The broker's own RA-TLS certificate, either made at start from an attester ...
    attester = "emulated-sgx"          # sgx_ecdsa | tdx | snp | emulated-sgx|-tdx|-snp
    emulated_root = "/path/to/root"    # the test root an emulated-* attester signs under
    format = "dice"                    # or "legacy" (Inclavare's per-TEE OIDs)
    # ... or a fixed pair made elsewhere (PEM; the key unencrypted)
    # certificate = "/etc/kbs/ratls-cert.pem"
    # private_key = "/etc/kbs/ratls-key.pem"
    sgx_policy = "/opt/verdictd/opa/sgxPolicy.rego"   # optional: Verdictd's gate policy
    sgx_data = "/opt/verdictd/opa/sgxData"            # optional: its reference (JSON)
    handshake_timeout = 30             # seconds
    idle_timeout = 300                 # seconds without a request before the broker closes

Exactly one of ``attester`` and the ``certificate``/``private_key`` pair is given.  Clients
are verified with the KBS's own verifier settings (``--trust-root`` accepts emulated
evidence under a test root, as for RCAR) and must pass the gate (the default is Verdictd's
default ``sgxPolicy.rego`` over ``{"mrEnclave": [], "mrSigner": [], "productId": 0,
"svn": 0}``: any genuine SGX enclave).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, model_validator

from veritee.config_model import ConfigSection
from veritee.errors import ConfigError, VeriteeError

if TYPE_CHECKING:
    from veritee.ratls.cert import RatlsIdentity

__all__ = ["ATTESTERS", "RatlsServerConfig", "parse_listen", "parse_ratls_section"]

ATTESTERS = ("sgx_ecdsa", "tdx", "snp", "emulated-sgx", "emulated-tdx", "emulated-snp")
Attester = Literal["sgx_ecdsa", "tdx", "snp", "emulated-sgx", "emulated-tdx", "emulated-snp"]
_TEE = {"sgx_ecdsa": "sgx", "tdx": "tdx", "snp": "snp"}


def parse_listen(text: str, where: str = "ratls.listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to bind."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: {text[:80]!r} is not a HOST:PORT address")
    return host, int(port)


class RatlsServerConfig(ConfigSection):
    listen: str | None = None
    attester: Attester | None = None
    emulated_root: str | None = None
    format: Literal["dice", "legacy"] = "dice"
    certificate: str | None = None
    private_key: str | None = None
    sgx_policy: str | None = None
    sgx_data: str | None = None
    handshake_timeout: float = Field(default=30, gt=0)
    idle_timeout: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _identity(self) -> RatlsServerConfig:
        pair = (self.certificate is not None, self.private_key is not None)
        if pair[0] != pair[1]:
            raise ValueError("certificate and private_key go together")
        if self.attester is None and not pair[0]:
            raise ValueError("give attester, or certificate and private_key")
        if self.attester is not None and pair[0]:
            raise ValueError("give attester or certificate/private_key, not both")
        if (self.attester or "").startswith("emulated-") and self.emulated_root is None:
            raise ValueError(f"attester {self.attester} needs emulated_root (a test root)")
        if self.listen is not None:
            try:
                parse_listen(self.listen)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def identity(self) -> RatlsIdentity:
        """The broker's RA-TLS key and certificate (made now from the attester, or read)."""
        from veritee.ratls.cert import make_identity

        if self.certificate is not None and self.private_key is not None:
            return _read_pair(Path(self.certificate), Path(self.private_key))
        assert self.attester is not None
        try:
            return make_identity(self._quoter(), fmt=self.format)
        except ConfigError:
            raise
        except VeriteeError as exc:
            raise ConfigError(f"ratls: cannot make the RA-TLS certificate: {exc}") from exc

    def _quoter(self) -> Any:
        from veritee.ratls.quoter import AttesterQuoter, EmulatedQuoter

        assert self.attester is not None
        if self.attester.startswith("emulated-"):
            assert self.emulated_root is not None
            root = Path(self.emulated_root)
            if not root.is_dir():
                raise ConfigError(f"ratls.emulated_root: {root} is not a test root directory")
            return EmulatedQuoter(root, self.attester.removeprefix("emulated-"))
        from veritee.guest.attesters.detect import attester_for
        from veritee.guest.attesters.linux import LinuxKernel

        return AttesterQuoter(attester_for(_TEE[self.attester], LinuxKernel()))


def _read_pair(cert_path: Path, key_path: Path) -> RatlsIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.ratls.cert import RatlsIdentity

    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"ratls: cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"ratls.certificate: {cert_path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"ratls.private_key: {key_path} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"ratls.private_key: {key_path} is not an EC key (rats-tls uses P-256)")
    if key.public_key() != certificate.public_key():
        raise ConfigError("ratls: the private key does not match the certificate")
    return RatlsIdentity(certificate=certificate, key=key, cert_pem=cert_pem, key_pem=key_pem)


def _problems(exc: ValidationError) -> str:
    found = []
    for error in exc.errors():
        where = ".".join(str(part) for part in ("ratls", *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        if error["loc"] and isinstance(got, str | int | float | bool) and repr(got) not in message:
            message += f"; got {got!r}"
        found.append(f"{where}: {message}")
    return "; ".join(found)


def parse_ratls_section(doc: Mapping[str, Any]) -> tuple[RatlsServerConfig | None, list[str]]:
    """The ``[ratls]`` table of a kbs-config document, and notes for its unknown keys."""
    raw = doc.get("ratls")
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        raise ConfigError("[ratls] must be a table")
    try:
        section = RatlsServerConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    notes = [f"ignored unknown key ratls.{key}" for key in (section.model_extra or {})]
    return section, notes
