"""Runs the installed `extractor` command the way a user would."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def extractor(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "extractor.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def extractor_json(*args: object) -> dict:
    return json.loads(extractor(*args, "--json").stdout)


def console_script() -> str:
    """The `extractor` console script that pip installed for this interpreter, else the first on PATH.

    The one beside ``sys.executable`` is preferred: a virtual environment's scripts need not be on
    PATH, and a pyenv shim on PATH would add its own start-up time to every run.
    """
    beside = Path(sys.executable).with_name("extractor")
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("extractor")
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
