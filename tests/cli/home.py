"""A scratch tickd home for in-process CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main


class CliHome:
    """A definitions directory and a store path under `root`; `run` calls `tickd` in-process
    with them and returns (exit code, stdout, stderr)."""

    def __init__(
        self, root: Path, capsys: pytest.CaptureFixture[str], modules: Mapping[str, str]
    ) -> None:
        self.root = root
        self.defs = root / "definitions"
        self.defs.mkdir()
        for name, source in modules.items():
            (self.defs / name).write_text(source)
        self.store = root / "tickd.db"
        self.capsys = capsys

    def args(self) -> list[str]:
        return ["--store", str(self.store), "--definitions", str(self.defs)]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, *self.args()])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    def process(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """The same command through a real `python -m daemon` process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKD_")}
        env["NO_COLOR"] = "1"
        return subprocess.run(
            [sys.executable, "-m", "daemon", *argv, *self.args()],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
