"""A real KBS on loopback for the KBS client's tests, and what they attest with.

``live_kbs`` serves the real KBS (sample evidence allowed, as for Trustee's sample
attester) under uvicorn on 127.0.0.1, with ``default/key/1`` = ``SECRET`` stored;
``SampleProvider`` makes Trustee's sample evidence; ``Wire`` is a real httpx.Client
that keeps every request and response it exchanges.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from datadir import SEEDS
from live_server import serve_app

from veritee.as_.config import AsSettings
from veritee.guest.kbs_client import KbsClient
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs

ERRORS = "https://github.com/confidential-containers/kbs/errors/"
SECRET = b"the very secret resource"
ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
DENY = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"
#: Seed 002's resource policy: the CPU TEE not contraindicated and the GPU affirming.
CPU_AND_GPU = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    input.submods.cpu0["ear.status"] != "contraindicated"
    input.submods.gpu0["ear.status"] == "affirming"
}
"""


class SampleProvider:
    """Trustee's sample attester: report data as it comes, standard base64."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        self.calls.append((tee, report_data))
        doc = {"svn": "1", "report_data": base64.b64encode(report_data).decode()}
        return json.dumps(doc, separators=(",", ":")).encode()


class SampleWithDevice(SampleProvider):
    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return {"sampledevice": {"svn": "2", "report_data": base64.b64encode(report_data).decode()}}


@dataclass
class Kbs:
    """One real KBS on 127.0.0.1 and its admin token."""

    url: str
    admin_token: str
    parts: KbsComponents

    def admin(self, **kwargs: Any) -> KbsClient:
        return KbsClient(self.url, admin_token=self.admin_token, **kwargs)

    def set_policy(self, text: str) -> None:
        with self.admin() as admin:
            admin.set_resource_policy(text)


@contextmanager
def live_kbs(trust_root: Path, data_dir: Path, **settings: Any) -> Iterator[Kbs]:
    """The real KBS with sample evidence allowed; ``settings`` go to its AsSettings."""
    attestation = AsSettings(
        data_dir=data_dir, trust_root=trust_root, allow_sample=True, **settings
    )
    parts = build_kbs(KbsSettings(attestation=attestation))
    token = parts.attestation.admin.token_path.read_text().strip()
    with serve_app(parts.app) as url:
        kbs = Kbs(url, token, parts)
        with kbs.admin() as admin:
            admin.set_resource("default/key/1", SECRET)
        yield kbs


class Wire:
    """A real httpx.Client whose event hooks keep every request and response it exchanges."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        self.http = httpx.Client(
            transport=transport,
            event_hooks={"request": [self.requests.append], "response": [self.responses.append]},
        )

    def client(self, kbs: Kbs, **kwargs: Any) -> KbsClient:
        return KbsClient(kbs.url, http=self.http, **kwargs)

    def names(self) -> list[str]:
        """The last path segment of each request: auth, attest, or the resource's tag."""
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


def seed_denial() -> str:
    """What seed 002's kbs-client prints when the resource policy denies."""
    seed = next(SEEDS.glob("002_*.txt")).read_text()
    start = seed.index("WARN kbs_protocol")
    end = seed.index("Error: request unauthorized") + len("Error: request unauthorized")
    return seed[start:end]
