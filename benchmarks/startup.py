"""Whole-process start-up and re-run cost, as a user sees it: the installed `extractor` command from
start to exit (wall time, and peak RSS of the process and its decode workers).

(a) `extractor --help`.                                               Target: <= 0.5 s.
(b) a cold `extractor label` over 4,000 LFW faces with the gender teacher, then the same command
    again (warm: every answer cached, 0 queries).        Target warm: <= 1.0 s and <= 300 MB peak.

    python benchmarks/startup.py [--images DIR] [--count N] [--runs R] [--importtime] [--as-is]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_pair import CENTRE_CROP, GENDER, GENDER_FLAGS, IMAGES

from extractor.cli.console_script import console_script as installed_script

HELP_TARGET_S, WARM_TARGET_S, WARM_TARGET_MB = 0.5, 1.0, 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--count", type=int, default=4000, help="images labeled (the first N by name)")
    parser.add_argument("--runs", type=int, default=5, help="repeats of --help and of the warm run")
    parser.add_argument("--importtime", action="store_true", help="list the warm run's slowest imports")
    parser.add_argument("--as-is", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE if set (every run then recompiles the package)")
    args = parser.parse_args()
    script = console_script()
    with tempfile.TemporaryDirectory() as scratch:
        if os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.as_is:
            # An installed package runs from cached bytecode; this environment forbids writing it, so the
            # children cache theirs under scratch instead (warmed up by an untimed run of each command).
            os.environ.pop("PYTHONDONTWRITEBYTECODE")
            os.environ["PYTHONPYCACHEPREFIX"] = str(Path(scratch) / "pycache")
            print("(PYTHONDONTWRITEBYTECODE is set here: bytecode is cached in a scratch folder, as an "
                  "installed package's would be; --as-is measures without it)")
        print(f"command: {script}\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
              "(where other work shares the cores, wall times stretch more than CPU times)")
        startup(script, args.runs)
        if not args.images.is_dir() or not GENDER.exists():
            print(f"\n(b) skipped: needs the LFW faces ({args.images}) and the gender teacher ({GENDER}) "
                  "from ../shared/assets")
            return
        labeling(script, args, Path(scratch))


def startup(script: str, runs: int) -> None:
    run([script, "--help"])  # untimed: fills the page cache (and the bytecode cache)
    helps = [run([script, "--help"]) for _ in range(runs)]
    help_s = [wall for wall, *_ in helps]
    print("\n(a) extractor --help")
    row(f"wall, best of {runs} (median)", f"{min(help_s):.2f} s ({statistics.median(help_s):.2f})",
        f"target <= {HELP_TARGET_S} s: {verdict(min(help_s) <= HELP_TARGET_S)}")
    row("CPU, best", f"{min(cpu for *_, cpu in helps):.2f} s")
    on_path = shutil.which("extractor")
    if on_path and Path(on_path).resolve() != Path(script).resolve():
        row("wall through PATH's `extractor`", f"{min(run([on_path, '--help'])[0] for _ in range(runs)):.2f} s",
            on_path)


def labeling(script: str, args: argparse.Namespace, scratch: Path) -> None:
    folder = scratch / "images"
    folder.mkdir()
    for source in sorted(args.images.iterdir())[:args.count]:
        (folder / source.name).symlink_to(source)
    label = [script, "label", "--teacher", str(GENDER), "--images", str(folder), *GENDER_FLAGS, *CENTRE_CROP,
             "--json"]
    run([*label, "--store", str(scratch / "warm-up.db"), "--dry-run"])  # untimed: page and bytecode caches
    label += ["--store", str(scratch / "labels.db")]
    cold_s, cold_mb, cold, cold_cpu = run(label)
    warm = [run(label) for _ in range(args.runs)]
    warm_s, warm_mb = min(s for s, *_ in warm), max(mb for _, mb, *_ in warm)
    warm_cpu = min(cpu for *_, cpu in warm)
    queries = sorted({summary["queries"] for _, _, summary, _ in warm})
    print(f"\n(b) extractor label, {cold['images']} LFW faces, gender teacher ({os.cpu_count()} decode workers)")
    row("cold", f"wall {cold_s:.2f} s, CPU {cold_cpu:.2f} s, peak {cold_mb:.0f} MB",
        f"{cold['labeled']} labeled, {cold['queries']} queries")
    row(f"warm, best of {args.runs} (median)",
        f"wall {warm_s:.2f} s ({statistics.median(s for s, *_ in warm):.2f}), CPU {warm_cpu:.2f} s, "
        f"peak {warm_mb:.0f} MB", f"queries {queries}")
    row("warm wall", f"{warm_s:.2f} s", f"target <= {WARM_TARGET_S} s: {verdict(warm_s <= WARM_TARGET_S)}")
    row("warm peak RSS", f"{warm_mb:.0f} MB", f"target <= {WARM_TARGET_MB} MB: {verdict(warm_mb <= WARM_TARGET_MB)}")
    row("cold / warm", f"{cold_s / warm_s:.1f}x")
    if args.importtime:
        slowest_imports(label)


def row(what: str, figure: str, note: str = "") -> None:
    print(f"    {what:<32} {figure:<44} {note}".rstrip())


def console_script() -> str:
    """The installed console script (``extractor.cli.console_script``: what a venv user runs); exits without one."""
    found = installed_script()
    if found is None:
        sys.exit("the `extractor` command is not installed: pip install -e .")
    return found


def run(command: list[str]) -> tuple[float, float, dict, float]:
    """Runs a command to its exit: wall seconds, peak RSS in MB (the process or its largest waited-for
    descendant, from wait4's rusage), its stdout parsed as JSON when it is JSON, and its CPU seconds
    (user + system, its waited-for descendants included: on a busy machine, steadier than wall time)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # not process.wait(): wait4 also gives the rusage
        wall_s = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            sys.exit(f"{' '.join(command)} exited {code}:\n{err.read().decode()}")
        try:
            result = json.loads(out.read())
        except ValueError:
            result = {}
    return wall_s, usage.ru_maxrss / 1024, result, usage.ru_utime + usage.ru_stime  # ru_maxrss: KiB on Linux


def slowest_imports(command: list[str], shown: int = 12) -> None:
    """The warm run's slowest imports (cumulative, by top-level package), from python -X importtime."""
    result = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True)
    by_package: dict[str, int] = {}
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative_us, name = line.split(":", 1)[1].split("|")
            if not name.startswith("  "):  # one space before a top-level import, two more per level
                top = name.strip().split(".")[0]
                by_package[top] = by_package.get(top, 0) + int(cumulative_us)
    print("    slowest imports of the warm run (cumulative ms): " + ", ".join(
        f"{name} {us / 1000:.0f}" for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:shown]))


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    main()
