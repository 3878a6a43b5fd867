"""LinuxKernel over a real directory and a real device: what the attesters see on Linux."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.linux import LinuxKernel
from veritee.guest.attesters.snp import SnpAttester
from veritee.guest.attesters.tdx import TDX_CMD_GET_REPORT0, TdxAttester
from veritee.guest.attesters.tsm import TSM_REPORT, tsm_provider, tsm_report


def test_failures_are_the_kernels_oserrors(tmp_path: Path) -> None:
    kernel = LinuxKernel(tmp_path)
    with pytest.raises(FileNotFoundError):
        kernel.read("/sys/missing")
    with pytest.raises(FileNotFoundError):
        kernel.write("/sys/missing", b"x")  # attributes are never created by writing
    with pytest.raises(FileNotFoundError):
        kernel.make_dir("/no/such/parent")
    with pytest.raises(ValueError, match="absolute"):
        kernel.exists("relative/path")
    with pytest.raises(OSError, match="Inappropriate ioctl") as info:
        LinuxKernel().ioctl("/dev/null", TDX_CMD_GET_REPORT0, bytearray(1088))
    assert info.value.errno == errno.ENOTTY


def test_file_and_directory_operations(tmp_path: Path) -> None:
    kernel = LinuxKernel(tmp_path, env={"OCCLUM": "1"})
    assert kernel.env == {"OCCLUM": "1"}
    assert "PATH" in LinuxKernel().env
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "attr").write_bytes(b"a longer old value")
    assert kernel.exists("/sys/attr")
    kernel.write("/sys/attr", b"new")
    assert kernel.read("/sys/attr") == b"new"
    entry = kernel.make_dir("/sys")
    assert entry.startswith("/sys/.tmp")
    assert (tmp_path / entry.lstrip("/")).is_dir()
    kernel.remove_dir(entry)
    assert not kernel.exists(entry)


def test_the_configfs_tsm_flow_over_a_plain_directory(tmp_path: Path) -> None:
    # A directory is no configfs: the entry has no provider, which the attester reports.
    (tmp_path / TSM_REPORT.lstrip("/")).mkdir(parents=True)
    kernel = LinuxKernel(tmp_path)
    assert tsm_provider(kernel) is None
    with pytest.raises(AttesterError, match="provider failed: ENOENT"):
        tsm_report(kernel, "tdx_guest", bytes(64))
    assert os.listdir(tmp_path / TSM_REPORT.lstrip("/")) == []  # the entry was removed


def test_a_device_that_is_not_a_tee_is_a_clear_attester_error(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "tdx_guest").symlink_to("/dev/null")
    (tmp_path / "dev" / "sev-guest").symlink_to("/dev/null")
    kernel = LinuxKernel(tmp_path)
    with pytest.raises(
        AttesterError, match=r"TDX_CMD_GET_REPORT0 on /dev/tdx_guest failed: ENOTTY"
    ):
        TdxAttester(kernel).read_runtime_measurement(17)
    with pytest.raises(AttesterError, match=r"configfs-tsm .*Linux 6\.7"):
        TdxAttester(kernel).evidence(b"")
    with pytest.raises(AttesterError, match=r"SNP_GET_EXT_REPORT on /dev/sev-guest failed: ENOTTY"):
        SnpAttester(kernel).evidence(b"")
    with pytest.raises(AttesterError, match=r"SNP_GET_REPORT on /dev/sev-guest failed: ENOTTY"):
        SnpAttester(kernel).init_data_binding()
