"""The Attestation Agent: evidence, tokens and runtime measurements for the workload.

As guest-components' AA does:

- :meth:`AttestationAgent.get_evidence` hands ``runtime_data`` to the attester
  unhashed (zero-padded by the attester; more than 64 bytes is refused);
- :meth:`~AttestationAgent.get_additional_evidence` gives the composite devices'
  evidence as ``{"<tee>": evidence}``, or no bytes at all when there are none;
- :meth:`~AttestationAgent.get_token` gets a ``kbs`` token through an RCAR
  handshake (returned with the TEE key pair) or a ``coco_as`` token straight from an
  Attestation Service; unlike upstream, a token is kept until shortly before it
  expires, so a burst of requests costs one attestation;
- :meth:`~AttestationAgent.extend_runtime_measurement` records an AAEL event;
- :meth:`~AttestationAgent.get_resource` fetches a KBS resource through the
  agent's attested session (the Confidential Data Hub's resource getter);
- :meth:`~AttestationAgent.check_init_data` checks that the initdata the agent was
  given is the one the TEE was launched with (a mismatch stops the agent).

The agent is shared by the REST API's worker threads: one lock serialises the
KBS session and one the event log.
"""

from __future__ import annotations

import base64
import enum
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from veritee.errors import ParseError, VeriteeError
from veritee.guest.aa_config import AaConfig
from veritee.guest.attesters.base import REPORT_DATA_MAX, Attester
from veritee.guest.attesters.provider import AttesterEvidenceProvider
from veritee.guest.eventlog import AaEventLog
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import KeyAlg, tee_key_pem, token_claims
from veritee.guest.resource_uri import parse_resource_uri
from veritee.initdata import Initdata, digest_for_tee

__all__ = [
    "AgentError",
    "AttestationAgent",
    "InitDataMismatch",
    "RuntimeDataTooLong",
    "RuntimeMeasurementResult",
    "UnsupportedTokenType",
]

TOKEN_MARGIN_S = 10.0
AS_TIMEOUT_S = 60.0


class AgentError(VeriteeError):
    """An Attestation Agent operation failed; the message says which and why."""


class RuntimeDataTooLong(AgentError):
    """More than 64 bytes of runtime data: the TEEs' report-data fields hold 64."""


class UnsupportedTokenType(AgentError):
    """``token_type`` is neither ``kbs`` nor ``coco_as``, or its section is not configured."""


class InitDataMismatch(AgentError):
    """The initdata given to the agent is not the one the TEE was launched with."""


class RuntimeMeasurementResult(enum.Enum):
    OK = "ok"
    NOT_SUPPORTED = "The platform does not support runtime measurement"
    NOT_ENABLED = "Attestation Agent does not enable eventlog recording"


class AttestationAgent:
    """One TEE's agent.  ``eventlog`` is the AAEL when ``enable_eventlog`` is set and the
    attester can extend a register; ``initdata`` is the document the agent was started with."""

    def __init__(
        self,
        attester: Attester,
        config: AaConfig,
        *,
        devices: Sequence[Attester] = (),
        initdata: Initdata | None = None,
        eventlog: AaEventLog | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.attester = attester
        self.config = config
        self.devices = tuple(devices)
        self._provider = AttesterEvidenceProvider(attester, self.devices)
        self.initdata = initdata
        self.eventlog = eventlog
        self._http = http
        self._clock = clock
        self._kbs: KbsClient | None = None
        self._kbs_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._as_token: tuple[str, float] | None = None

    def close(self) -> None:
        """Close the KBS session's connections (the agent can be used again after)."""
        with self._kbs_lock:
            if self._kbs is not None:
                self._kbs.close()
                self._kbs = None

    def __enter__(self) -> AttestationAgent:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def tee(self) -> str:
        return self.attester.tee

    @property
    def additional_tees(self) -> list[str]:
        return [device.tee for device in self.devices]

    # -- evidence -------------------------------------------------------------------------

    def get_evidence(self, runtime_data: bytes) -> bytes:
        """The attester's evidence over ``runtime_data``, used as given (never hashed)."""
        return self.attester.evidence(_checked(runtime_data))

    def get_additional_evidence(self, runtime_data: bytes) -> bytes:
        """``{"<tee>": <evidence>, ...}`` as JSON bytes; empty bytes when there is no device."""
        found = self.additional_evidence(_checked(runtime_data))
        return json.dumps(found, separators=(",", ":")).encode() if found else b""

    # The KBS client's evidence-provider protocol: the agent is its own provider.

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        return self._provider.evidence(tee, report_data)

    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return self._provider.additional_evidence(report_data)

    # -- tokens ---------------------------------------------------------------------------

    def get_token(self, token_type: str) -> bytes:
        """``kbs``: ``{"token": JWT, "tee_keypair": PEM}`` as JSON bytes; ``coco_as``: the
        token text the Attestation Service returned."""
        if token_type == "kbs":  # noqa: S105 (a token type, not a secret)
            with self._kbs_lock:
                client = self._kbs_client()
                token = client.token()
                pem = tee_key_pem(client.tee_key).decode()
            return json.dumps({"token": token, "tee_keypair": pem}).encode()
        if token_type == "coco_as":  # noqa: S105
            return self._coco_as_token().encode()
        raise UnsupportedTokenType(f"Unsupported token type {token_type!r}")

    def get_resource(self, uri: str) -> bytes:
        """A KBS resource (``kbs:///repo/type/tag``) through the agent's attested session."""
        parsed = parse_resource_uri(uri)
        if parsed.plugin != "resource" or parsed.query is not None:
            raise ParseError(
                "resource uri", f"{parsed}: only the KBS resource plugin, without a query"
            )
        if len(parsed.segments) != 3:
            raise ParseError(
                "resource uri", f"{parsed}: the resource plugin wants <repository>/<type>/<tag>"
            )
        with self._kbs_lock:
            return self._kbs_client().get_resource(parsed.resource_path)

    def _kbs_client(self) -> KbsClient:
        kbs = self.config.kbs
        if kbs is None:
            raise UnsupportedTokenType(
                f"no [token_configs.kbs] url in {self.config.source}: the agent knows no KBS"
            )
        if self._kbs is None:
            key_alg: KeyAlg = "RSA" if kbs.tee_key_algorithm == "RSA-OAEP-256" else "EC"
            self._kbs = KbsClient(
                kbs.url,
                evidence_provider=self,
                tee=self.tee,
                key_alg=key_alg,
                http=self._http,
                cert_pem=kbs.cert.encode() if kbs.cert else None,
                init_data=self.initdata.text if self.initdata is not None else None,
            )
        return self._kbs

    def _coco_as_token(self) -> str:
        coco_as = self.config.coco_as
        if coco_as is None:
            raise UnsupportedTokenType(
                f"no [token_configs.coco_as] url in {self.config.source}: "
                "the agent knows no Attestation Service"
            )
        with self._kbs_lock:
            cached = self._as_token
            if cached is not None and cached[1] - TOKEN_MARGIN_S > self._clock():
                return cached[0]
            evidence = self.attester.evidence(b"")
            body = {
                "verification_requests": [
                    {
                        "tee": self.tee,
                        "evidence": base64.urlsafe_b64encode(evidence).rstrip(b"=").decode(),
                    }
                ],
                "policy_ids": [],
            }
            url = f"{coco_as.url}/attestation"
            try:
                if self._http is not None:
                    reply = self._http.post(url, json=body, timeout=AS_TIMEOUT_S)
                else:
                    reply = httpx.post(url, json=body, timeout=AS_TIMEOUT_S)
            except httpx.HTTPError as exc:
                raise AgentError(f"POST {url}: {type(exc).__name__}") from exc
            if reply.status_code != httpx.codes.OK:
                raise AgentError(f"POST {url}: HTTP {reply.status_code}")
            token = reply.text
            expires = token_claims(token).get("exp")
            if isinstance(expires, int | float):
                self._as_token = (token, float(expires))
            return token

    # -- runtime measurement --------------------------------------------------------------

    def extend_runtime_measurement(
        self, domain: str, operation: str, content: str
    ) -> RuntimeMeasurementResult:
        if not self.config.eventlog_config.enable_eventlog:
            return RuntimeMeasurementResult.NOT_ENABLED
        if self.eventlog is None or not self.attester.supports_runtime_measurement():
            return RuntimeMeasurementResult.NOT_SUPPORTED
        with self._log_lock:
            self.eventlog.extend(domain, operation, content)
        return RuntimeMeasurementResult.OK

    # -- initdata -------------------------------------------------------------------------

    def check_init_data(self) -> str | None:
        """Compare the initdata digest with the TEE's launch-bound field.

        Returns a note when the TEE has no such field (the check is then the
        verifier's), None when it matches; raises :class:`InitDataMismatch` otherwise.
        """
        if self.initdata is None:
            return None
        bound = self.attester.init_data_binding()
        if bound is None:
            return f"{self.tee} binds no initdata at launch: only the verifier can check it"
        field, expected = digest_for_tee(self.initdata, self.tee)
        if not hmac.compare_digest(bound, expected):
            raise InitDataMismatch(
                f"the initdata digest is not the TEE's {field}: {expected.hex()} was given, "
                f"the TEE was launched with {bound.hex()}"
            )
        return None


def _checked(runtime_data: bytes) -> bytes:
    if len(runtime_data) > REPORT_DATA_MAX:
        raise RuntimeDataTooLong(
            f"runtime data is {len(runtime_data)} bytes; at most {REPORT_DATA_MAX} fit in "
            "the report data (hash longer data first)"
        )
    return runtime_data
