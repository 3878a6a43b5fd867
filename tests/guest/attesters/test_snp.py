"""The SNP attester against the emulated guest: refusals first, then the ioctl structs it
sends, the certificate-buffer retry, configfs-tsm, verified evidence and HOST_DATA."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.emulator.machine import EmulatedMachine, Faults
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.snp import (
    DEVICE,
    EXT_REPORT_REQ,
    GUEST_REQUEST,
    REPORT_REQ,
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
    SnpAttester,
)
from veritee.guest.attesters.snp_serde import attestation_report_json, cert_chain_json
from veritee.guest.attesters.tsm import TSM_REPORT, ProviderMismatch
from veritee.verifier.base import Verdict

Verify = Callable[..., Verdict]


def launch(root: TestRoot, **options: object) -> EmulatedMachine:
    return EmulatedMachine.launch(root, "snp", **options)


def ioctl_only(root: TestRoot, **options: object) -> EmulatedMachine:
    return launch(root, configfs_tsm=False, **options)


# --------------------------------------------------------------------------- refusals


def test_report_data_over_64_bytes_is_refused_before_any_ioctl(test_root: TestRoot) -> None:
    machine = ioctl_only(test_root)
    with pytest.raises(AttesterError, match="65 bytes; snp takes at most 64"):
        SnpAttester(machine).evidence(bytes(65))
    assert machine.calls == []


def test_a_firmware_error_names_fw_error(test_root: TestRoot) -> None:
    machine = ioctl_only(test_root, faults=Faults(fw_error=0x16))
    with pytest.raises(
        AttesterError,
        match=r"SNP_GET_EXT_REPORT on /dev/sev-guest failed: EIO .*"
        r"fw_error 0x16",
    ):
        SnpAttester(machine).evidence(b"")
    assert len(machine.ioctls) == 1  # an error is not retried


def test_a_table_beyond_the_kernel_limit_fails_after_one_retry(test_root: TestRoot) -> None:
    machine = ioctl_only(test_root, faults=Faults(cert_table_size=5 * 4096))
    with pytest.raises(AttesterError, match="EINVAL"):
        SnpAttester(machine).evidence(b"")
    sizes = [EXT_REPORT_REQ.unpack(call.req or b"")[3] for call in machine.ioctls]
    assert sizes == [4096, 5 * 4096]


def test_wrong_provider_without_the_device_is_refused(test_root: TestRoot) -> None:
    machine = launch(test_root, device=False, faults=Faults(provider="tdx_guest"))
    with pytest.raises(ProviderMismatch, match="'tdx_guest', not 'sev_guest'"):
        SnpAttester(machine).evidence(b"")
    assert machine.entries() == []


def test_configfs_conflict_and_failures_remove_the_entry(test_root: TestRoot) -> None:
    machine = launch(test_root, device=False, faults=Faults(inblob_race=True))
    with pytest.raises(AttesterError, match="inblob write conflict"):
        SnpAttester(machine).evidence(b"")
    machine.faults = Faults(fw_error=0x16)
    with pytest.raises(AttesterError, match="outblob failed: EIO"):
        SnpAttester(machine).evidence(b"")
    assert machine.entries() == []


def test_no_runtime_measurement(test_root: TestRoot) -> None:
    attester = SnpAttester(ioctl_only(test_root))
    assert attester.supports_runtime_measurement() is False
    with pytest.raises(AttesterError, match="no runtime measurement register"):
        attester.extend_runtime_measurement(bytes(48), 17)
    with pytest.raises(AttesterError, match="no runtime measurement register"):
        attester.read_runtime_measurement(17)


def test_no_interface_at_all(test_root: TestRoot) -> None:
    with pytest.raises(AttesterError, match="no SNP report interface"):
        SnpAttester(EmulatedMachine()).evidence(b"")


# --------------------------------------------------------------------------- requests


def test_ext_report_request_structs(test_root: TestRoot, verify: Verify) -> None:
    machine = ioctl_only(test_root)
    evidence = SnpAttester(machine).evidence(b"nonce")
    (call,) = machine.ioctls
    assert (call.device, call.request) == (DEVICE, SNP_GET_EXT_REPORT)
    assert SNP_GET_EXT_REPORT == 0xC0205302
    version, req_ptr, resp_ptr, fw_error, vmm_error = GUEST_REQUEST.unpack(call.arg)
    assert (len(call.arg), version, fw_error, vmm_error) == (32, 1, 0, 0)
    assert req_ptr
    assert resp_ptr
    assert call.req is not None
    assert len(call.req) == 112
    user_data, vmpl, certs_address, certs_len = EXT_REPORT_REQ.unpack(call.req)
    assert (user_data, vmpl, certs_len) == (b"nonce" + bytes(59), 0, 4096)
    assert certs_address != 0
    assert call.req[68:96] == bytes(28)  # reserved
    verdict = verify("snp", evidence, report_data=b"nonce")
    assert verdict.verified, verdict.error
    assert verdict.claims["report_data"] == (b"nonce" + bytes(59)).hex()


def test_a_bigger_host_table_is_fetched_on_the_one_retry(
    test_root: TestRoot, verify: Verify
) -> None:
    machine = ioctl_only(test_root, faults=Faults(cert_table_size=9000))
    evidence = SnpAttester(machine).evidence(b"nonce")
    first, second = machine.ioctls
    assert EXT_REPORT_REQ.unpack(first.req or b"")[3] == 4096
    assert EXT_REPORT_REQ.unpack(second.req or b"")[3] == 3 * 4096  # what the kernel asked for
    chain = json.loads(evidence)["cert_chain"]
    vcek = test_root.amd.vek("vcek").public_bytes(Encoding.DER)
    assert chain == [{"cert_type": "VCEK", "data": list(vcek)}]
    assert verify("snp", evidence, report_data=b"nonce").verified


def test_configfs_tsm_report_with_auxblob(test_root: TestRoot, verify: Verify) -> None:
    machine = launch(test_root)
    evidence = SnpAttester(machine).evidence(b"via configfs")
    assert machine.ioctls == []
    names = [(c.op, c.path.rsplit("/", 1)[-1]) for c in machine.calls if TSM_REPORT in c.path]
    assert names == [
        ("make_dir", "report"),
        ("read", "provider"),
        ("write", "inblob"),
        ("read", "outblob"),
        ("read", "auxblob"),
        ("read", "generation"),
        ("remove_dir", names[-1][1]),
    ]
    assert machine.entries() == []
    doc = json.loads(evidence)
    assert doc["cert_chain"][0]["cert_type"] == "VCEK"
    assert verify("snp", evidence, report_data=b"via configfs").verified


def test_another_provider_falls_back_to_the_device(test_root: TestRoot) -> None:
    machine = launch(test_root, faults=Faults(provider="tdx_guest"))
    SnpAttester(machine).evidence(b"")
    assert [c.request for c in machine.ioctls] == [SNP_GET_EXT_REPORT]
    assert machine.entries() == []


def test_evidence_shape_vlek_and_no_host_certs(test_root: TestRoot, verify: Verify) -> None:
    evidence = SnpAttester(ioctl_only(test_root, signer="vlek")).evidence(b"")
    doc = json.loads(evidence)
    assert list(doc) == ["attestation_report", "cert_chain"]
    assert evidence == json.dumps(doc, separators=(",", ":")).encode()
    assert doc["attestation_report"]["version"] == 5
    assert doc["attestation_report"]["vmpl"] == 0
    assert [c["cert_type"] for c in doc["cert_chain"]] == ["VLEK"]
    assert verify("snp", evidence, report_data=b"").verified
    bare = json.loads(SnpAttester(ioctl_only(test_root, host_certs=False)).evidence(b""))
    assert bare["cert_chain"] is None


@pytest.mark.parametrize("digest", [hashlib.sha256(b"i").digest(), hashlib.sha384(b"i").digest()])
def test_host_data_binds_the_initdata_digest(
    test_root: TestRoot, verify: Verify, digest: bytes
) -> None:
    machine = launch(test_root, init_data_digest=digest)
    attester = SnpAttester(machine)
    assert attester.init_data_binding() == digest[:32]
    (call,) = machine.ioctls
    assert (call.request, len(call.req or b"")) == (SNP_GET_REPORT, 96)
    assert SNP_GET_REPORT == 0xC0205300
    assert REPORT_REQ.unpack(call.req or b"") == (bytes(64), 0)
    evidence = attester.evidence(b"x")
    assert verify("snp", evidence, report_data=b"x", init_data=digest).verified  # regularised
    other = verify("snp", evidence, init_data=hashlib.sha256(b"other").digest())
    assert (other.verified, other.step) == (False, "init_data")


def test_init_data_binding_through_configfs_only(test_root: TestRoot) -> None:
    machine = launch(test_root, device=False, init_data_digest=b"\x05" * 32)
    assert SnpAttester(machine).init_data_binding() == b"\x05" * 32
    assert GUEST_REQUEST.size == 32
    assert EXT_REPORT_REQ.size == 112
    assert REPORT_REQ.size == 96


def test_certificate_tables() -> None:
    vcek = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes
    other = uuid.UUID("00000000-1111-2222-3333-444444444444")
    table = (
        struct.pack("<16sII", vcek, 72, 3)
        + struct.pack("<16sII", other.bytes, 75, 2)
        + bytes(24)
        + b"abcde"
    )
    assert cert_chain_json(table) == [
        {"cert_type": "VCEK", "data": [97, 98, 99]},
        {"cert_type": {"OTHER": str(other)}, "data": [100, 101]},
    ]
    assert cert_chain_json(bytes(4096)) is None
    with pytest.raises(AttesterError, match="no all-zero terminator"):
        cert_chain_json(struct.pack("<16sII", vcek, 0, 24))
    with pytest.raises(AttesterError, match="points outside the table"):
        cert_chain_json(struct.pack("<16sII", vcek, 48, 100) + bytes(24))
    with pytest.raises(AttesterError, match="malformed SNP report"):
        attestation_report_json(bytes(100))
