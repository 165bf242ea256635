"""The installed commands of edgesel-tools answer --help (argparse formats every help string only then: a bare
"%" in one crashed `edgesel-sim --help`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgesel_tools.sim.cli import SUBCOMMANDS, main

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", ["edgesel-sim", "edgesel-bench", "edgesel-demo"])
def test_installed_command_answers_help(command: str) -> None:
    done = subprocess.run([str(BIN / command), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {command}")


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_sim_subcommand_answers_help(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([subcommand, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: edgesel-sim {subcommand}")
