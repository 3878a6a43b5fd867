"""A real HTTP server on 127.0.0.1 serving the real PCS/PCCS and KDS files and headers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

Query = dict[str, list[str]]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Route = Reply | Callable[[Query], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up is expected here


class LocalServer:
    """ThreadingHTTPServer on an ephemeral port; routes by path, records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def _record(self, target: str) -> None:
        with self._lock:
            self.requests.append(target)
            self.hits[urlsplit(target).path] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._record(self.path)
                parts = urlsplit(self.path)
                route = server.routes.get(parts.path)
                if route is None:
                    reply = Reply(404, b"not found")
                elif isinstance(route, Reply):
                    reply = route
                else:
                    reply = route(parse_qs(parts.query))
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout tests)
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def header_chain(path: Path) -> str:
    """A PEM chain URL-encoded as PCS sends it in the issuer-chain headers."""
    return quote(path.read_text(), safe="")


def serve_pccs(server: LocalServer, vectors: Path, *, pcs_style: bool = False) -> None:
    """The go-tdx-guest responses for FMSPC 50806F000000 at the PCCS (or Intel PCS) paths.

    ``pcs_style``: no ``/rootcacrl`` (so it 404s), the root CRL as DER at
    ``/IntelSGXRootCA.der``, and the API v3 name of the TCB-info chain header.
    """
    tdx = vectors / "go-tdx-guest"
    derived = tdx / "derived"
    tcb_header = "SGX-TCB-Info-Issuer-Chain" if pcs_style else "TCB-Info-Issuer-Chain"
    tcb_body = (tdx / "sample_tcbInfo_response").read_bytes()
    tcb_headers = {tcb_header: header_chain(derived / "tcb_info_issuer_chain.pem")}

    def tcb(query: Query) -> Reply:
        if query.get("fmspc", [""])[0].upper() != "50806F000000":
            return Reply(404, b"")
        return Reply(200, tcb_body, dict(tcb_headers, **{"Content-Type": "application/json"}))

    def pckcrl(query: Query) -> Reply:
        if query.get("ca") != ["platform"] or query.get("encoding") != ["der"]:
            return Reply(400, b"")
        chain = header_chain(derived / "pck_crl_issuer_chain.pem")
        return Reply(200, (tdx / "pckcrl").read_bytes(), {"SGX-PCK-CRL-Issuer-Chain": chain})

    server.routes["/sgx/certification/v4/pckcrl"] = pckcrl
    server.routes["/tdx/certification/v4/tcb"] = tcb
    server.routes["/tdx/certification/v4/qe/identity"] = Reply(
        200,
        (tdx / "sample_qeIdentity_response").read_bytes(),
        {_QE_HEADER: header_chain(derived / "qe_identity_issuer_chain.pem")},
    )
    root_crl = (tdx / "rootcrl.der").read_bytes()
    if pcs_style:
        server.routes["/IntelSGXRootCA.der"] = Reply(200, root_crl)
    else:
        server.routes["/sgx/certification/v4/rootcacrl"] = Reply(200, root_crl.hex().encode())


_QE_HEADER = "SGX-Enclave-Identity-Issuer-Chain"
A1_HWID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
# go-sev-guest's KDS URL for vector A1 has blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68.
A1_TCB = {"blSPL": 2, "teeSPL": 0, "snpSPL": 5, "ucodeSPL": 68}


def serve_kds(server: LocalServer, vectors: Path) -> None:
    """KDS paths for vector A1 (Milan VCEK) and the Milan/Genoa/Turin chains."""
    vcek = (vectors / "go-sev-guest" / "vcek.testcer").read_bytes()

    def a1_vcek(query: Query) -> Reply:
        try:
            got = {name: int(values[0]) for name, values in query.items()}
        except ValueError:
            return Reply(400, b"bad SPL")
        if got != A1_TCB:
            return Reply(404, b"")
        return Reply(200, vcek, {"Content-Type": "application/x-x509-ca-cert"})

    server.routes[f"/vcek/v1/Milan/{A1_HWID}"] = a1_vcek
    trust = vectors / "go-sev-guest" / "trust"
    for product in ("Milan", "Genoa", "Turin"):
        vcek_chain = "turin_vcek" if product == "Turin" else product.lower()
        for signer, name in (("vcek", vcek_chain), ("vlek", f"{product.lower()}_vlek")):
            chain = (trust / f"ask_ark_{name}.pem").read_bytes()
            server.routes[f"/{signer}/v1/{product}/cert_chain"] = Reply(200, chain)


def serve_pccs_bundle(server: LocalServer, bundle: Path) -> None:
    """One dcap-qvl QuoteCollateralV3 file (a real one, e.g. T1's) at the PCCS v4 paths, with
    Intel's issuer-chain headers; ``tcbInfo`` and ``enclaveIdentity`` keep their signed text."""
    coll = json.loads(bundle.read_text())
    fmspc = json.loads(coll["tcb_info"])["fmspc"].upper()
    tee = "tdx" if json.loads(coll["tcb_info"])["id"] == "TDX" else "sgx"

    def tcb(query: Query) -> Reply:
        if query.get("fmspc", [""])[0].upper() != fmspc:
            return Reply(404, b"")
        body = f'{{"tcbInfo":{coll["tcb_info"]},"signature":"{coll["tcb_info_signature"]}"}}'
        chain = quote(coll["tcb_info_issuer_chain"], safe="")
        return Reply(200, body.encode(), {"TCB-Info-Issuer-Chain": chain})

    qe_body = (
        f'{{"enclaveIdentity":{coll["qe_identity"]},'
        f'"signature":"{coll["qe_identity_signature"]}"}}'
    )
    server.routes[f"/{tee}/certification/v4/tcb"] = tcb
    server.routes[f"/{tee}/certification/v4/qe/identity"] = Reply(
        200, qe_body.encode(), {_QE_HEADER: quote(coll["qe_identity_issuer_chain"], safe="")}
    )
    server.routes["/sgx/certification/v4/pckcrl"] = Reply(
        200,
        bytes.fromhex(coll["pck_crl"]),
        {"SGX-PCK-CRL-Issuer-Chain": quote(coll["pck_crl_issuer_chain"], safe="")},
    )
    server.routes["/sgx/certification/v4/rootcacrl"] = Reply(200, coll["root_ca_crl"].encode())
