"""The sample TEE and the sample device: Trustee's shapes, unpadded report data."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.sample import SampleAttester, SampleDeviceAttester
from veritee.verifier.base import Verdict

Verify = Callable[..., Verdict]


def test_refusals() -> None:
    with pytest.raises(AttesterError, match="65 bytes; sample takes at most 64"):
        SampleAttester().evidence(bytes(65))
    with pytest.raises(AttesterError, match="sampledevice TEE has no runtime"):
        SampleDeviceAttester().extend_runtime_measurement(bytes(48), 17)
    assert SampleAttester().supports_runtime_measurement() is False
    assert SampleAttester().init_data_binding() is None


def test_evidence_bytes(verify: Verify) -> None:
    # guest-components §1.3's example: report data "xxxx"
    assert SampleAttester().evidence(b"xxxx") == b'{"svn":"1","report_data":"eHh4eA=="}'
    assert SampleDeviceAttester().evidence(b"xxxx") == b'{"svn":"2","report_data":"eHh4eA=="}'
    assert SampleDeviceAttester().tee == "sampledevice"
    verdict = verify("sample", SampleAttester().evidence(b"\x01" * 64), report_data=b"\x01" * 64)
    assert verdict.verified, verdict.error
    assert not verify("sample", SampleAttester().evidence(b"a"), report_data=b"a\x00").verified
