"""Runs the installed `extractor` command the way a user would."""
from __future__ import annotations

import json
import subprocess
import sys


def extractor(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "extractor.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def extractor_json(*args: object) -> dict:
    return json.loads(extractor(*args, "--json").stdout)
