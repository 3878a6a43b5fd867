"""Verifying attester evidence under the session's test root."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from veritee.emulator.root import TestRoot
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.registry import VerifierSettings, build_verifier

Verify = Callable[..., Verdict]


@pytest.fixture(scope="session")
def verify(test_root: TestRoot) -> Verify:
    """``verify(tee, evidence, report_data=…, init_data=…)`` with our verifier for ``tee``,
    trusting the test root (TDX/SGX collateral from its bundle)."""
    settings = VerifierSettings(trust_root=test_root.directory, allow_sample=True)
    verifiers = {}

    def run(tee: str, evidence: bytes, **options: bytes | None) -> Verdict:
        if tee not in verifiers:
            verifiers[tee] = build_verifier(tee, settings)
        return verifiers[tee].verify(evidence, VerifyOptions(**options))

    return run
