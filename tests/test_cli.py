"""The command line: help, version, config, usage errors (no analysis needed)."""

from __future__ import annotations

import subprocess
import sys

from spinalquant import __version__
from spinalquant.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_is_for_scientists(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--out", "--workers", "--config", "summary.csv", "Exit status", "--dry-run"):
        assert word in out


def test_config_defaults_prints_toml(capsys):
    assert main(["config", "--defaults"]) == 0
    assert "[motor_neurons]" in capsys.readouterr().out


def test_bad_config_is_usage_error(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fibers]\nbogus = 1\n", encoding="utf-8")
    (tmp_path / "imgs").mkdir()
    assert main(["run", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_missing_input_is_usage_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_empty_folder_is_usage_error(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert main(["run", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")]) == 2
    assert "no supported image" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "spinalquant.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


def test_error_text_is_printed_verbatim(tmp_path, capsys):
    """Square brackets in a message ("[channels] ...") are text, not terminal markup."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[channels]\ngfp = 1.5\n", encoding="utf-8")
    (tmp_path / "imgs").mkdir()
    assert main(["run", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "[channels] gfp must be a channel name" in err
