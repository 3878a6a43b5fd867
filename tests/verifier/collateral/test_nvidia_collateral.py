"""NVIDIA collateral over real loopback HTTP: RIMs from a RIM-service stand-in serving NVIDIA's
real RIMs as the service does (JSON, base64 in ``rim``), and OCSP from a responder built here
with cryptography's OCSPResponseBuilder for a small P-384 PKI made in the test."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from datadir import VECTORS
from live_server import serve_app
from local_pcs import refused_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from veritee.errors import CollateralError, CollateralMissing
from veritee.store.kv import MemoryStore
from veritee.verifier.collateral.anchor import Anchor
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.nvidia_ocsp import OCSP_URL, OcspChecker
from veritee.verifier.collateral.nvidia_rims import RIM_SERVICE_URL, RimSource
from veritee.verifier.nvidia_certs import pinned_device_root, pinned_rim_root

NV = VECTORS / "nvidia"
DRIVER = (NV / "Driver_RIM_test_no_gpu.swidtag").read_bytes()
VBIOS = (NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()
DRIVER_ID = "NV_GPU_DRIVER_GH100_545.00"
VBIOS_ID = "NV_GPU_VBIOS_1010_0200_882_96005E0001"
INSIDE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)  # inside the test_no_gpu RIM signers' validity
NOW = dt.datetime.now(dt.UTC)


def _cache() -> CollateralCache:
    return CollateralCache(MemoryStore(), test_roots=True)


# ----------------------------------------------------------------------------- RIM service


@dataclass
class RimService:
    url: str
    documents: dict[str, bytes | Response]
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def rim_service() -> Iterator[RimService]:
    documents: dict[str, bytes | Response] = {DRIVER_ID: DRIVER, VBIOS_ID: VBIOS}
    asked: list[str] = []

    async def rim(request: Request) -> Response:
        rim_id = request.path_params["rim_id"]
        asked.append(rim_id)
        found = documents.get(rim_id)
        if found is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if isinstance(found, Response):
            return found
        return JSONResponse({"id": rim_id, "rim": base64.b64encode(found).decode()})

    app = Starlette(routes=[Route("/v1/rim/{rim_id}", rim)])
    with serve_app(app) as base:
        yield RimService(f"{base}/v1/rim/", documents, asked)


def test_an_unknown_id_is_a_collateral_error_naming_it(rim_service: RimService) -> None:
    source = RimSource(url=rim_service.url)
    with pytest.raises(CollateralError, match=r"NV_GPU_DRIVER_GH100_1.0.*HTTP 404"):
        source.rim("NV_GPU_DRIVER_GH100_1.0", at=INSIDE)


def test_a_malformed_id_is_refused_before_any_request(rim_service: RimService) -> None:
    with pytest.raises(CollateralError, match="not an NVIDIA RIM id"):
        RimSource(url=rim_service.url).rim("../../etc/passwd")
    assert rim_service.asked == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Response(b"<html/>"), "did not answer JSON"),
        (JSONResponse({"id": DRIVER_ID}), "'rim' field"),
        (JSONResponse({"rim": "!!!"}), "'rim' field"),
        (JSONResponse({"rim": base64.b64encode(b"<x/>").decode()}), "does not parse"),
        (JSONResponse({"rim": base64.b64encode(VBIOS).decode()}), "vbios RIM for version"),
        (Response(b"", status_code=500), "HTTP 500"),
    ],
)
def test_a_bad_answer_is_a_collateral_error_and_is_not_cached(
    rim_service: RimService, answer: Response, message: str
) -> None:
    rim_service.documents[DRIVER_ID] = answer
    cache = _cache()
    with pytest.raises(CollateralError, match=message):
        RimSource(url=rim_service.url, cache=cache).rim(DRIVER_ID, at=INSIDE)
    assert cache.entries() == []


def test_a_rim_under_another_root_is_refused_naming_it(rim_service: RimService) -> None:
    cache = _cache()
    source = RimSource(url=rim_service.url, cache=cache, roots=[pinned_device_root()])
    with pytest.raises(CollateralError, match=r"NVIDIA CoRIM signing Root CA.*not used or cached"):
        source.rim(DRIVER_ID, at=INSIDE)
    assert cache.entries() == []


def test_an_unreachable_service_is_a_collateral_error() -> None:
    with pytest.raises(CollateralError, match="failed: ConnectError"):
        RimSource(url=refused_url() + "/v1/rim/").rim(DRIVER_ID, at=INSIDE)


def test_offline_without_the_rim_cached_names_the_id() -> None:
    with pytest.raises(CollateralMissing, match=f"NVIDIA RIM {DRIVER_ID}: offline"):
        RimSource(cache=_cache(), offline=True).rim(DRIVER_ID, at=INSIDE)


def test_rims_from_the_service_then_from_the_cache_then_offline(rim_service: RimService) -> None:
    cache = _cache()
    source = RimSource(url=rim_service.url, cache=cache)
    assert source.rim(DRIVER_ID, at=INSIDE) == DRIVER
    assert source.rim(VBIOS_ID, at=INSIDE) == VBIOS
    assert source.rim(DRIVER_ID, at=INSIDE) == DRIVER
    assert rim_service.asked == [DRIVER_ID, VBIOS_ID]
    entries = {e.key: e for e in cache.entries()}
    assert set(entries) == {DRIVER_ID, VBIOS_ID}
    driver = entries[DRIVER_ID]
    assert driver.kind == "nvidia-rim"
    assert driver.root_name == "CN=NVIDIA CoRIM signing Root CA,O=NVIDIA,C=US"
    assert driver.expires_at == dt.datetime(2025, 6, 26, 6, 10, 12, tzinfo=dt.UTC)
    offline = RimSource(cache=cache, offline=True)
    assert offline.rim(VBIOS_ID, at=INSIDE) == VBIOS
    # After the signer expired the cached copy is not handed out.
    with pytest.raises(CollateralMissing, match="expired at 2025-06-2"):
        offline.rim(DRIVER_ID, at=NOW)
    assert RimSource(url=rim_service.url, cache=cache).rim(DRIVER_ID, at=NOW) == DRIVER
    assert rim_service.asked == [DRIVER_ID, VBIOS_ID, DRIVER_ID]


def test_the_default_cache_keeps_rims_under_nvidias_pinned_rim_root(
    rim_service: RimService,
) -> None:
    # A cache without test roots (the operator default) keeps only items under a vendor root:
    # NVIDIA's RIM root is one, so real RIMs are cached and served offline afterwards.
    cache = CollateralCache(MemoryStore())
    assert RimSource(url=rim_service.url, cache=cache).rim(DRIVER_ID, at=INSIDE) == DRIVER
    (entry,) = cache.entries()
    assert entry.root == Anchor.of(pinned_rim_root()).fingerprint
    assert Anchor.of(pinned_rim_root()).vendor
    assert Anchor.of(pinned_device_root()).vendor
    assert RimSource(cache=cache, offline=True).rim(DRIVER_ID, at=INSIDE) == DRIVER


def test_the_default_service_url_is_nvidias() -> None:
    assert RimSource().url == RIM_SERVICE_URL == "https://rim.attestation.nvidia.com/v1/rim/"
    assert RimSource(directory=Path()).url is None


def test_rims_from_a_directory_by_id_by_nvtrust_name_and_by_content(tmp_path: Path) -> None:
    (tmp_path / f"{DRIVER_ID}.swidtag").write_bytes(DRIVER)
    shutil.copy(NV / "1010_0200_882_96005E0001_PROD.swidtag", tmp_path)
    shutil.copy(NV / "g520_0202_885_96006D0008_PROD.swidtag", tmp_path / "any-name.swidtag")
    (tmp_path / "junk.swidtag").write_bytes(b"not a rim")
    source = RimSource(directory=tmp_path)
    assert source.rim(DRIVER_ID) == DRIVER
    prod = (NV / "1010_0200_882_96005E0001_PROD.swidtag").read_bytes()
    assert source.rim(VBIOS_ID) == prod
    by_content = (NV / "g520_0202_885_96006D0008_PROD.swidtag").read_bytes()
    assert source.rim("NV_GPU_VBIOS_G520_0202_885_96006D0008") == by_content
    with pytest.raises(
        CollateralError, match=f"NV_GPU_DRIVER_GH100_550.90.07: no RIM .*{tmp_path}"
    ):
        source.rim("NV_GPU_DRIVER_GH100_550.90.07")


def test_a_directory_with_two_different_rims_for_one_version_is_ambiguous(tmp_path: Path) -> None:
    shutil.copy(NV / "1010_0200_882_96005E0001_PROD.swidtag", tmp_path / "a.swidtag")
    shutil.copy(NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag", tmp_path / "b.swidtag")
    with pytest.raises(CollateralError, match="2 different RIMs"):
        RimSource(directory=tmp_path).rim("NV_GPU_VBIOS_9_9_9_96005E0001")


def test_an_oversized_rim_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / f"{DRIVER_ID}.swidtag").write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(CollateralError, match="over"):
        RimSource(directory=tmp_path).rim(DRIVER_ID)


def test_a_directory_miss_falls_back_to_the_service(
    tmp_path: Path, rim_service: RimService
) -> None:
    source = RimSource(directory=tmp_path, url=rim_service.url)
    assert source.rim(DRIVER_ID, at=INSIDE) == DRIVER
    assert rim_service.asked == [DRIVER_ID]


# ----------------------------------------------------------------------------- a test PKI


@dataclass
class Pki:
    root: x509.Certificate
    ca: x509.Certificate  # has an OCSP access location
    mid: x509.Certificate  # a CA without one (like a GPU's BROM certificate)
    leaf: x509.Certificate  # without one
    keys: dict[str, ec.EllipticCurvePrivateKey]

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf, self.mid, self.ca, self.root]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    ocsp_url: bool = False,
    eku: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ocsp_url:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return builder.sign(signer, hashes.SHA384())


@pytest.fixture(scope="module")
def pki() -> Pki:
    keys = {n: ec.generate_private_key(ec.SECP384R1()) for n in ("root", "ca", "mid", "leaf")}
    root = _cert("Test Root", keys["root"], "Test Root", keys["root"], ca=True)
    ca = _cert("Test CA", keys["ca"], "Test Root", keys["root"], ca=True, ocsp_url=True)
    mid = _cert("Test BROM", keys["mid"], "Test CA", keys["ca"], ca=True)
    leaf = _cert("Test Leaf", keys["leaf"], "Test BROM", keys["mid"], ca=False)
    return Pki(root, ca, mid, leaf, keys)


def _response(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    responder: x509.Certificate | None = None,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    this = this_update or NOW - dt.timedelta(hours=1)
    revoked = status == ocsp.OCSPCertStatus.REVOKED
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=issuer,
        algorithm=algorithm or hashes.SHA1(),
        cert_status=status,
        this_update=this,
        next_update=next_update or this + dt.timedelta(days=7),
        revocation_time=this if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder or issuer)
    if responder is not None:
        builder = builder.certificates([responder])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(key, hashes.SHA384()).public_bytes(Encoding.DER)


def _flip_last(der: bytes) -> bytes:
    """One changed byte at the end of the response: the last byte of its ECDSA signature."""
    return der[:-1] + bytes([der[-1] ^ 1])


def _write(directory: Path, cert: x509.Certificate, der: bytes) -> None:
    (directory / f"{cert.serial_number:x}.der").write_bytes(der)


# ----------------------------------------------------------------------------- OCSP: directory


def _errors(pki: Pki) -> list[tuple[str, Callable[[], bytes], str]]:
    k, other = pki.keys, ec.generate_private_key(ec.SECP384R1())
    stranger = _cert("Stranger", other, "Test CA", k["ca"], ca=False, eku=True)
    no_eku = _cert("No EKU", other, "Test CA", k["ca"], ca=False)
    foreign = _cert("Foreign", other, "Test Root", k["root"], ca=False, eku=True)
    return [
        ("not DER", lambda: b"garbage", "not a DER OCSP response"),
        (
            "unsuccessful",
            lambda: ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(Encoding.DER),
            "UNAUTHORIZED",
        ),
        ("another cert", lambda: _response(pki.ca, pki.root, k["root"]), "another certificate"),
        ("bad sig", lambda: _flip_last(_response(pki.mid, pki.ca, k["ca"])), "does not verify"),
        ("delegate", lambda: _response(pki.mid, pki.ca, other, responder=stranger), None),
        ("no eku", lambda: _response(pki.mid, pki.ca, other, responder=no_eku), "may not sign"),
        ("foreign", lambda: _response(pki.mid, pki.ca, other, responder=foreign), "not issued by"),
        (
            "stale",
            lambda: _response(
                pki.mid, pki.ca, k["ca"], this_update=NOW - dt.timedelta(days=9),
                next_update=NOW - dt.timedelta(days=2),
            ),
            "current until",
        ),
        (
            "future",
            lambda: _response(pki.mid, pki.ca, k["ca"], this_update=NOW + dt.timedelta(days=1)),
            "after",
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(9))
def test_a_response_that_cannot_be_trusted_is_a_collateral_error(
    pki: Pki, tmp_path: Path, case: int
) -> None:
    label, make, message = _errors(pki)[case]
    _write(tmp_path, pki.mid, make())
    checker = OcspChecker(directory=tmp_path)
    if message is None:  # the delegated responder with the OCSP-signing EKU is accepted
        assert checker.cert_status(pki.mid, pki.ca, at=NOW) == "good", label
        return
    with pytest.raises(CollateralError, match=message) as info:
        checker.cert_status(pki.mid, pki.ca, at=NOW)
    assert "Test BROM" in str(info.value), label


def test_statuses_from_a_directory_and_the_worst_of_a_chain(pki: Pki, tmp_path: Path) -> None:
    k = pki.keys
    _write(tmp_path, pki.ca, _response(pki.ca, pki.root, k["root"], algorithm=hashes.SHA384()))
    checker = OcspChecker(directory=tmp_path)
    assert checker.url is None
    assert checker.cert_status(pki.ca, pki.root, at=NOW) == "good"
    assert checker.status(pki.chain, at=NOW) == "unknown"  # no response for the BROM
    _write(tmp_path, pki.mid, _response(pki.mid, pki.ca, k["ca"]))
    assert checker.status(pki.chain, at=NOW) == "good"  # the leaf is not asked about
    _write(
        tmp_path, pki.mid, _response(pki.mid, pki.ca, k["ca"], status=ocsp.OCSPCertStatus.UNKNOWN)
    )
    assert checker.status(pki.chain, at=NOW) == "unknown"
    _write(
        tmp_path, pki.mid, _response(pki.mid, pki.ca, k["ca"], status=ocsp.OCSPCertStatus.REVOKED)
    )
    assert checker.status(pki.chain, at=NOW) == "revoked"
    assert checker.status([pki.root], at=NOW) == "unknown"


# ----------------------------------------------------------------------------- OCSP: HTTP


@dataclass
class Responder:
    url: str
    serials: list[int] = field(default_factory=list)
    mode: str = "echo"  # echo | no-nonce | wrong-nonce | status-500


@pytest.fixture
def responder(pki: Pki) -> Iterator[Responder]:
    pairs = ((pki.ca, pki.root, "root"), (pki.mid, pki.ca, "ca"), (pki.leaf, pki.mid, "mid"))
    by_serial = {c.serial_number: (c, i, n) for c, i, n in pairs}
    state = Responder("")

    async def answer(request: Request) -> Response:
        assert request.headers["content-type"] == "application/ocsp-request"
        parsed = ocsp.load_der_ocsp_request(await request.body())
        assert isinstance(parsed.hash_algorithm, hashes.SHA384)
        state.serials.append(parsed.serial_number)
        if state.mode == "status-500":
            return Response(b"", status_code=500)
        cert, issuer, key = by_serial[parsed.serial_number]
        nonce = parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        nonce = {"echo": nonce, "no-nonce": None, "wrong-nonce": bytes(32)}[state.mode]
        der = _response(cert, issuer, pki.keys[key], nonce=nonce, algorithm=hashes.SHA384())
        return Response(der, media_type="application/ocsp-response")

    with serve_app(Starlette(routes=[Route("/", answer, methods=["POST"])])) as base:
        state.url = base + "/"
        yield state


def test_a_responder_that_fails_is_a_collateral_error(pki: Pki, responder: Responder) -> None:
    responder.mode = "status-500"
    with pytest.raises(CollateralError, match=r"POST .* returned HTTP 500"):
        OcspChecker(url=responder.url).status(pki.chain, at=NOW)
    with pytest.raises(CollateralError, match="failed: ConnectError"):
        OcspChecker(url=refused_url()).status(pki.chain, at=NOW)


def test_a_wrong_nonce_is_refused_and_a_missing_one_accepted(
    pki: Pki, responder: Responder
) -> None:
    responder.mode = "wrong-nonce"
    with pytest.raises(CollateralError, match="nonce"):
        OcspChecker(url=responder.url).status(pki.chain, at=NOW)
    responder.mode = "no-nonce"
    assert OcspChecker(url=responder.url).status(pki.chain, at=NOW) == "good"


def test_offline_without_a_cached_response_names_the_certificate(pki: Pki) -> None:
    with pytest.raises(CollateralMissing, match=r"OCSP status of 'Test BROM'.*offline"):
        OcspChecker(cache=_cache(), offline=True).status(pki.chain, at=NOW)


def test_ocsp_over_http_then_from_the_cache_then_offline(pki: Pki, responder: Responder) -> None:
    cache = _cache()
    checker = OcspChecker(url=responder.url, cache=cache)
    assert checker.status(pki.chain, at=NOW) == "good"
    assert responder.serials == [pki.mid.serial_number, pki.ca.serial_number]  # not the leaf
    assert checker.status(pki.chain, at=NOW) == "good"
    assert len(responder.serials) == 2
    assert {e.kind for e in cache.entries()} == {"nvidia-ocsp"}
    assert OcspChecker(cache=cache, offline=True).status(pki.chain, at=NOW) == "good"
    # A leaf whose issuer gives an OCSP location is asked about too.
    assert checker.status([pki.mid, pki.ca, pki.root], at=NOW) == "good"
    assert OcspChecker().url == OCSP_URL == "https://ocsp.ndis.nvidia.com/"
