"""The generated AMD hierarchy matches AMD's real certificates, and round-trips through files."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID

from veritee.emulator.amd_pki import DEFAULT_TCB, PRODUCTS, AmdProduct, AmdTestRoot
from veritee.errors import VerificationError
from veritee.pem import load_certificates
from veritee.verifier.snp import verify_vek_chain
from veritee.verifier.snp_roots import fingerprint

AMD = "1.3.6.1.4.1.3704.1."
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
NOW = dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def roots() -> dict[AmdProduct, AmdTestRoot]:
    """One root per generation for the whole module (RSA-4096 key generation is slow)."""
    return {p: AmdTestRoot.create(product=p, now=NOW) for p in PRODUCTS}


def real_cert(vectors: Path, name: str) -> x509.Certificate:
    return load_certificates((vectors / name).read_bytes())[0]


def amd_exts(cert: x509.Certificate) -> list[tuple[str, bool, bytes]]:
    out = []
    for ext in cert.extensions:
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        out.append((ext.oid.dotted_string, ext.critical, ext.value.value))
    return out


def ext_value(cert: x509.Certificate, oid: str) -> bytes:
    value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(AMD + oid)).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def real_tcb(cert: x509.Certificate, product: str) -> dict[str, int]:
    oids = {"bootloader": "3.1", "tee": "3.2", "snp": "3.3", "microcode": "3.8"}
    if product == "Turin":
        oids["fmc"] = "3.9"
    return {k: core.Integer.load(ext_value(cert, o)).native for k, o in oids.items()}


def pss_params(cert: x509.Certificate) -> Any:
    der = cert.public_bytes(serialization.Encoding.DER)
    return asn1_x509.Certificate.load(der)["signature_algorithm"]["parameters"].native


# ------------------------------------------------------------------------- chain


@pytest.mark.parametrize("product", PRODUCTS)
def test_chain_signatures_are_rsa_pss_sha384_salt48(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct
) -> None:
    root = roots[product]
    for cert, issuer in (
        (root.ark, root.ark),
        (root.ask, root.ark),
        (root.asvk, root.ark),
        (root.vcek, root.ask),
        (root.vlek, root.asvk),
    ):
        key = issuer.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, PSS, hashes.SHA384())
        assert cert.issuer == issuer.subject
        params = pss_params(cert)
        assert params["hash_algorithm"]["algorithm"] == "sha384"
        assert params["mask_gen_algorithm"]["algorithm"] == "mgf1"
        assert params["mask_gen_algorithm"]["parameters"]["algorithm"] == "sha384"
        assert params["salt_length"] == 48
    for ca in (root.ark, root.ask, root.asvk):
        key = ca.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 4096
    for vek, vek_key in ((root.vcek, root.vcek_key), (root.vlek, root.vlek_key)):
        assert isinstance(vek_key.curve, ec.SECP384R1)
        assert vek.public_key() == vek_key.public_key()


@pytest.mark.parametrize("product", PRODUCTS)
def test_names_serials_and_validity(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct, vectors: Path
) -> None:
    root = roots[product]
    real_ask = real_cert(vectors, f"trustee/snp/{product.lower()}_ask_ark_asvk.pem")
    real = {
        c.subject.rfc4514_string(): c
        for c in load_certificates(
            (vectors / f"trustee/snp/{product.lower()}_ask_ark_asvk.pem").read_bytes()
        )
    }
    assert real_ask.issuer == root.ask.issuer  # the same DN, attribute for attribute
    for cert in (root.ark, root.ask, root.asvk):
        twin = real[cert.subject.rfc4514_string()]  # AMD's certificate of the same name
        assert cert.serial_number == twin.serial_number
        assert [e.oid for e in cert.extensions] == [e.oid for e in twin.extensions]
        for ext in cert.extensions:
            if ext.oid not in (
                ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
            ):
                assert ext == twin.extensions.get_extension_for_oid(ext.oid)
        assert cert.not_valid_before_utc == NOW
        assert cert.not_valid_after_utc == NOW.replace(year=NOW.year + 25)
    cns = [c.subject.rfc4514_string().split(",")[0] for c in (root.ark, root.ask, root.asvk)]
    assert cns == [f"CN=ARK-{product}", f"CN=SEV-{product}", f"CN=SEV-VLEK-{product}"]
    real_vcek = real_cert(vectors, "go-sev-guest/vcek.testcer")
    assert root.vcek.subject == real_vcek.subject
    assert root.vlek.subject == real_cert(vectors, "trustee/snp/test-vlek.der").subject
    assert root.vcek.serial_number == root.vlek.serial_number == 1  # AMD: 0, unbuildable
    assert root.vcek.not_valid_after_utc == NOW.replace(year=NOW.year + 7)
    assert root.vlek.not_valid_after_utc == NOW.replace(year=NOW.year + 1)


@pytest.mark.parametrize(
    ("product", "vector"),
    [
        ("Milan", "go-sev-guest/vcek.testcer"),
        ("Milan", "virtee-sev/vcek_milan.der"),
        ("Genoa", "trustee/az-snp-vtpm/vcek-genoa.pem"),
        ("Turin", "virtee-sev/vcek_turin.der"),
    ],
)
def test_vcek_extensions_byte_identical_to_kds(
    roots: dict[AmdProduct, AmdTestRoot], vectors: Path, product: AmdProduct, vector: str
) -> None:
    real = real_cert(vectors, vector)
    hw_id = ext_value(real, "4")  # raw, not DER-wrapped: 64 bytes, 8 on Turin
    assert len(hw_id) == (8 if product == "Turin" else 64)
    root = roots[product].reissue(chip_id=hw_id, reported_tcb=real_tcb(real, product), now=NOW)
    assert amd_exts(root.vcek) == amd_exts(real)  # OIDs, order, criticality and DER values
    assert root.hw_id == (hw_id[:8] if product == "Turin" else hw_id)


def test_vlek_extensions_byte_identical_to_kds(
    roots: dict[AmdProduct, AmdTestRoot], vectors: Path
) -> None:
    real = real_cert(vectors, "trustee/snp/test-vlek.der")
    root = roots["Milan"].reissue(reported_tcb=real_tcb(real, "Milan"), now=NOW)
    mine, theirs = amd_exts(root.vlek), amd_exts(real)
    assert mine[:-1] == theirs[:-1]  # everything but the CSP's name
    assert ext_value(root.vlek, "3.8") == bytes.fromhex("020200d9")  # ucode 217, two bytes
    assert mine[-1][0] == theirs[-1][0] == AMD + "5"
    assert isinstance(core.IA5String.load(mine[-1][2]).native, str)


def test_turin_hwid_is_the_first_8_bytes(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Turin"]
    assert root.chip_id[8:] == bytes(56)
    assert ext_value(root.vcek, "4") == root.chip_id[:8] == root.hw_id
    assert core.Integer.load(ext_value(root.vcek, "1")).native == 1
    assert core.IA5String.load(ext_value(root.vcek, "2")).native == "Turin"
    explicit = root.reissue(chip_id=bytes(range(8)))
    assert explicit.chip_id == bytes(range(8)) + bytes(56)


def test_default_tcb_and_product_names(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    for product, root in roots.items():
        assert root.reported_tcb == DEFAULT_TCB[product]
        assert real_tcb(root.vcek, product) == root.reported_tcb
        assert real_tcb(root.vlek, product) == root.reported_tcb
        assert len(root.chip_id) == 64
    names = {p: core.IA5String.load(ext_value(r.vcek, "2")).native for p, r in roots.items()}
    assert names == {"Milan": "Milan-B0", "Genoa": "Genoa", "Turin": "Turin"}
    vlek_name = core.IA5String.load(ext_value(roots["Milan"].vlek, "2")).native
    assert vlek_name == "Milan"


@pytest.mark.parametrize("product", PRODUCTS)
def test_chains_verify_only_under_the_test_ark(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct
) -> None:
    root = roots[product]
    when = NOW + dt.timedelta(days=30)
    for signer in ("vcek", "vlek"):
        certs = load_certificates(root.cert_chain_pem(signer))
        assert [c.subject for c in certs] == [
            root.vek(signer).subject,
            root.intermediate(signer).subject,
            root.ark.subject,
        ]
        got = verify_vek_chain(certs[0], certs[1:], when=when, trusted_arks=[root.ark])
        assert got == product
        with pytest.raises(VerificationError) as info:
            verify_vek_chain(certs[0], certs[1:], when=when)
        assert info.value.step == "ark"
        assert f"ARK-{product}" in str(info.value)
        assert fingerprint(root.ark) in str(info.value)


def test_kds_material(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Genoa"]
    assert x509.load_der_x509_certificate(root.kds_vcek_der()) == root.vcek
    assert load_certificates(root.kds_cert_chain_pem()) == [root.ask, root.ark]
    assert load_certificates(root.kds_cert_chain_pem("vlek")) == [root.asvk, root.ark]


def test_reissue_keeps_the_hierarchy_and_keys(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Milan"]
    tcb = {"bootloader": 9, "tee": 1, "snp": 30, "microcode": 250}
    other = root.reissue(reported_tcb=tcb)
    assert (other.ark, other.ask, other.asvk) == (root.ark, root.ask, root.asvk)
    assert other.vcek_key is root.vcek_key
    assert other.chip_id == root.chip_id
    assert real_tcb(other.vcek, "Milan") == tcb == other.reported_tcb
    assert other.vcek != root.vcek


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"product": "Bergamo"}, "product must be one of"),
        ({"chip_id": bytes(8)}, "chip_id must be 64 bytes for Milan, got 8"),
        ({"product": "Turin", "chip_id": bytes(9)}, "chip_id must be 8 or 64 bytes"),
        ({"reported_tcb": {"bootloader": 1}}, "needs exactly the keys"),
        (
            {"reported_tcb": {"bootloader": 1, "tee": 0, "snp": 0, "microcode": 0, "fmc": 0}},
            "needs exactly the keys",
        ),
        (
            {
                "product": "Turin",
                "reported_tcb": {"bootloader": 1, "tee": 0, "snp": 0, "microcode": 0},
            },
            "needs exactly the keys fmc",
        ),
        ({"reported_tcb": {"bootloader": 256, "tee": 0, "snp": 0, "microcode": 0}}, "0..255"),
    ],
)
def test_create_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    # Validation happens before any key is generated, so these are fast.
    with pytest.raises(ValueError, match=message):
        AmdTestRoot.create(**kwargs)


# ---------------------------------------------------------------------- save/load


def test_save_load_round_trip(roots: dict[AmdProduct, AmdTestRoot], tmp_path: Path) -> None:
    root = roots["Turin"]
    directory = tmp_path / "amd" / "turin"
    root.save(directory)
    files = sorted(p.name for p in directory.iterdir())
    roles = ["ark", "ask", "asvk", "vcek", "vlek"]
    assert files == sorted(
        ["chip.json", *(f"{r}.pem" for r in roles), *(f"{r}.key" for r in roles)]
    )
    for role in roles:
        assert stat.S_IMODE((directory / f"{role}.key").stat().st_mode) == 0o600
    chip = json.loads((directory / "chip.json").read_text())
    assert chip == {
        "product": "Turin",
        "chip_id": root.chip_id.hex(),
        "reported_tcb": root.reported_tcb,
    }

    loaded = AmdTestRoot.load(directory)
    assert (loaded.product, loaded.chip_id, loaded.reported_tcb) == (
        root.product,
        root.chip_id,
        root.reported_tcb,
    )
    for role in roles:
        assert getattr(loaded, role) == getattr(root, role)
        mine, theirs = getattr(loaded, f"{role}_key"), getattr(root, f"{role}_key")
        assert mine.private_numbers() == theirs.private_numbers()
    assert loaded.cert_chain_pem("vlek") == root.cert_chain_pem("vlek")

    root.save(directory)  # overwriting keeps the modes
    assert stat.S_IMODE((directory / "ark.key").stat().st_mode) == 0o600


def test_load_rejects_mismatched_or_missing_files(
    roots: dict[AmdProduct, AmdTestRoot], tmp_path: Path
) -> None:
    roots["Milan"].save(tmp_path / "a")
    roots["Genoa"].save(tmp_path / "b")
    (tmp_path / "a" / "vcek.key").write_bytes((tmp_path / "b" / "vcek.key").read_bytes())
    with pytest.raises(ValueError, match=r"vcek\.key: the key does not belong to vcek\.pem"):
        AmdTestRoot.load(tmp_path / "a")
    (tmp_path / "b" / "ask.pem").unlink()
    with pytest.raises(ValueError, match=r"ask\.pem: cannot read"):
        AmdTestRoot.load(tmp_path / "b")
    (tmp_path / "b" / "chip.json").write_text('{"product": "Milan"}')
    with pytest.raises(ValueError, match=r"chip\.json: not a test-root chip description"):
        AmdTestRoot.load(tmp_path / "b")
