"""Running `python -m extractor.cli` from a benchmark, and the ``mean ± sd`` cells of the tables it prints."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from real_pair import CIFAR_FLAGS, CIFAR_TEACHER, ROOT, cifar_pool


def run_cli(*args: object, nice: bool = False) -> str:
    """Runs `python -m extractor.cli ARGS` in the repository root; returns its stdout, or exits with its stderr.

    ``nice``: at a lower priority and with passive OpenMP waits (unless OMP_WAIT_POLICY is set), for long
    trainings on a machine shared with other jobs.
    """
    command = [sys.executable, "-m", "extractor.cli", *map(str, args)]
    env = None
    if nice:
        command.insert(0, "nice")
        # Passive OpenMP waits: with the 2 cores shared by other jobs, spinning torch threads trained ResNet-8
        # 10x slower here (11 vs 110 img/s, measured with both settings at the same load).
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout


def extractor(*args: object, nice: bool = False) -> dict:
    """`extractor ARGS --json`: the command's result as a dict (see ``run_cli`` for ``nice``)."""
    return json.loads(run_cli(*args, "--json", nice=nice))


def label_cifar_split(out: Path, train: int, test: int, *, teacher: Path = CIFAR_TEACHER,
                      nice: bool = False) -> tuple[Path, Path, Path]:
    """``teacher`` (the shared CIFAR teacher, or one normalised like it) labels
    ``cifar_pool(out / "cifar-TRAIN-TEST", train, test)`` into a store beside it.

    Returns:
        The pool folder, its split CSV (for `--split-by CSV split`) and the store.
    """
    pool = out / f"cifar-{train}-{test}"
    split_csv = cifar_pool(pool, train, test)
    store = out / f"{pool.name}.db"
    extractor("label", "--teacher", teacher, "--images", pool, "--store", store, *CIFAR_FLAGS, "--quiet",
              nice=nice)
    return pool, split_csv, store


def mean_sd(values: Iterable[float | None], *, scale: float = 100.0, spec: str = ".1f", unit: str = "") -> str:
    """``mean ± sd`` over seeds of the values that are not None, times ``scale``, formatted with ``spec``
    and ``unit`` after the mean; the value alone for one seed; "n/a" for none."""
    found = [value for value in values if value is not None]
    if not found:
        return "n/a"
    if len(found) == 1:
        return f"{format(scale * found[0], spec)}{unit}"
    return f"{format(scale * statistics.mean(found), spec)}{unit} ± {format(scale * statistics.stdev(found), spec)}"
