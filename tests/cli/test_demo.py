"""`veritee demo` runs the seeds' flows and says so; its exit code reflects the outcome."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from veritee.cli import app


def test_demo_runs_the_seed_flows(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "PolicyDeny" in result.output
    assert "insecureAcceptAnything" in result.output
    assert "all flows behaved as the seeds show" in result.output
    assert (tmp_path / "state" / "admin.token").exists()
    again = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])  # reuses the state
    assert again.exit_code == 0, again.output
