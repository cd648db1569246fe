"""Where the installed `extractor` command is, for whoever runs it as a user would (tests, benchmarks)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def console_script() -> str | None:
    """The `extractor` console script that pip installed for this interpreter, else the first on PATH; None
    when there is neither.

    The one beside ``sys.executable`` is preferred: a virtual environment's scripts need not be on
    PATH, and a pyenv shim on PATH would add its own start-up time to every run.
    """
    beside = Path(sys.executable).with_name("extractor")
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("extractor")
