"""TEE detection in guest-components' order, on emulated machines; no silent sample."""

from __future__ import annotations

import pytest

from veritee.emulator.kernel import EmulatedKernel, Tsm
from veritee.emulator.machine import EmulatedMachine, SgxEnclave
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.detect import (
    NoTeeFound,
    attester_for,
    detect_attester,
    detect_devices,
    detect_tee,
    no_tee_error,
)
from veritee.guest.attesters.sample import SampleDeviceAttester
from veritee.guest.attesters.sgx import SgxAttester
from veritee.guest.attesters.snp import SnpAttester
from veritee.guest.attesters.tdx import TdxAttester


def test_an_empty_machine_has_no_tee_and_the_error_says_what_was_looked_for() -> None:
    machine = EmulatedMachine()
    assert detect_tee(machine) is None
    assert detect_attester(machine) is None
    error = no_tee_error(machine)
    assert isinstance(error, NoTeeFound)
    assert isinstance(error, AttesterError)
    text = str(error)
    for looked_for in (
        "/sys/kernel/config/tsm/report (absent)",
        "'tdx_guest'",
        "'sev_guest'",
        "/dev/tdx_guest (absent)",
        "OCCLUM (unset)",
        "/dev/attestation/attestation_type reading 'dcap' (absent)",
        "/sys/devices/platform/sev-guest (absent)",
        "sample TEE is never chosen silently",
    ):
        assert looked_for in text
    assert detect_devices(machine) == []


def test_an_unknown_provider_is_named() -> None:
    kernel = EmulatedKernel()
    kernel.add_tsm(Tsm("arm_cca_guest", bytes))
    assert detect_tee(kernel) is None
    assert "provider 'arm_cca_guest'" in str(no_tee_error(kernel))
    assert kernel.entries() == []  # the probe removed its entry


@pytest.mark.parametrize(
    ("tee", "options", "kind"),
    [
        ("tdx", {}, TdxAttester),
        ("tdx", {"device": False, "sysfs": False}, TdxAttester),  # configfs-tsm only
        ("tdx", {"configfs_tsm": False}, TdxAttester),  # /dev/tdx_guest only
        ("snp", {}, SnpAttester),
        ("snp", {"configfs_tsm": False}, SnpAttester),
        ("sgx", {}, SgxAttester),
    ],
)
def test_detection_on_emulated_machines(
    test_root: TestRoot, tee: str, options: dict[str, bool], kind: type
) -> None:
    machine = EmulatedMachine.launch(test_root, tee, **options)
    assert detect_tee(machine) == tee
    attester = detect_attester(machine)
    assert isinstance(attester, kind)
    assert machine.entries() == []


def test_snp_by_configfs_provider_alone() -> None:
    kernel = EmulatedKernel()
    kernel.add_tsm(Tsm("sev_guest", bytes))
    assert detect_tee(kernel) == "snp"


def test_tdx_comes_before_sgx(test_root: TestRoot) -> None:
    machine = EmulatedMachine.launch(test_root, "tdx")
    SgxEnclave(machine, test_root)
    assert detect_tee(machine) == "tdx"


def test_occlum_is_sgx_but_unsupported() -> None:
    machine = EmulatedMachine(env={"OCCLUM": ""})
    assert detect_tee(machine) == "sgx"
    with pytest.raises(AttesterError, match=r"Occlum .* not supported"):
        detect_attester(machine)


def test_sample_device_and_explicit_attesters() -> None:
    machine = EmulatedMachine(env={"ENABLE_SAMPLE_DEVICE": "1"})
    (device,) = detect_devices(machine)
    assert isinstance(device, SampleDeviceAttester)
    assert attester_for("sample", machine).tee == "sample"
    with pytest.raises(AttesterError, match="unknown TEE 'cca'"):
        attester_for("cca", machine)
