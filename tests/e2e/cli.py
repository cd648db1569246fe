"""Runs the installed `extractor` command the way a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from extractor.cli.console_script import console_script as installed_script


def extractor(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "extractor.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def extractor_json(*args: object) -> dict:
    return json.loads(extractor(*args, "--json").stdout)


def console_script() -> str:
    """The installed `extractor` console script (``extractor.cli.console_script``); fails where there is none."""
    found = installed_script()
    if found is None:
        raise AssertionError("the `extractor` console script is not installed: pip install -e .")
    return found


def installed(*args: object, cwd: Path, env: dict[str, str] | None = None, check: bool = True
              ) -> subprocess.CompletedProcess:
    """Runs the installed console script (not `python -m`) from ``cwd``, as a user in a shell would."""
    command = [console_script(), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def installed_json(*args: object, cwd: Path) -> dict:
    return json.loads(installed(*args, "--json", cwd=cwd).stdout)
