"""`veritee agent serve` refuses to start, clearly, when it cannot serve what was asked."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot

runner = CliRunner()


def test_on_a_host_without_a_tee_it_says_what_it_looked_for(tmp_path: Path) -> None:
    config = tmp_path / "cdh.toml"
    config.write_text('[kbc]\nname = "cc_kbc"\nurl = "http://127.0.0.1:8080"\n')
    result = runner.invoke(app, ["agent", "serve", "--cdh-config", str(config)])
    assert result.exit_code == 1
    assert "no TEE found; looked for: configfs-tsm" in result.output
    assert "Traceback" not in result.output


def test_bad_options_are_usage_errors() -> None:
    for args in (["--bind", "8006"], ["--bind", "127.0.0.1:99999"], ["--features", "some"]):
        result = runner.invoke(app, ["agent", "serve", *args])
        assert result.exit_code == 2, (args, result.output)


def test_bad_configs_stop_the_agent_naming_the_key(test_root: TestRoot, tmp_path: Path) -> None:
    aa = tmp_path / "aa.toml"
    aa.write_text('[eventlog_config]\nenable_eventlog = "yes"\n')
    emulated = ["agent", "serve", "--emulated", str(test_root.directory)]
    result = runner.invoke(app, [*emulated, "--config", str(aa)])
    assert result.exit_code == 1
    assert "eventlog_config.enable_eventlog" in result.output
    result = runner.invoke(app, emulated)  # no KBS URL anywhere: no CDH
    assert result.exit_code == 1
    assert "no cdh.toml" in result.output
    bad = tmp_path / "initdata.toml"
    bad.write_text('version = "0.2.0"\nalgorithm = "sha256"\n')
    result = runner.invoke(app, [*emulated, "--initdata", str(bad)])
    assert result.exit_code == 1
    assert "version must be '0.1.0'" in result.output
