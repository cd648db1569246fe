"""The `extractor` command line: the app, its command groups, and the one error boundary."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import traceback
from collections.abc import Callable

import typer

from extractor.cli import demo, distill, label, report, select, store, train
from extractor.cli.config_file import load_default_map, split_config_flag
from extractor.errors import ExtractionError
from extractor.store.lock import StoreBusy

# rich_markup_mode=None: plain click help and usage errors; rendering them with rich costs ~0.15 s of imports.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Black-box model extraction: label images with an opaque teacher, train a compact "
                       "student on its answers, report what you got. Every command also takes --config "
                       "FILE.toml: one table per command ([label], [train], ...) whose keys are its long flag "
                       "names; flags given on the command line override the file.")
store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Inspect, check and back up the label store (a .db file and its -wal).")
app.add_typer(store_app, name="store")


def _add_commands(group: typer.Typer, commands: dict[str, Callable[..., None]]) -> None:
    """Registers each function of ``commands`` under its name, in the order --help lists them."""
    for name, command in commands.items():
        group.command(name)(command)


_add_commands(app, {"label": label.label, "select": select.select, "distill": distill.distill, "train": train.train,
                    "chain": train.chain, "quantize": train.quantize, "report": report.report,
                    "export": store.export, "demo": demo.demo})
_add_commands(store_app, {"stats": store.store_stats, "check": store.store_check, "backup": store.store_backup})

EXIT_BUSY = 75
"""Exit status when the store is busy with another job: EX_TEMPFAIL of sysexits.h, "try again later"."""
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
"""128 + the signal's number, as a shell reports a process the signal ended."""

_STOPPED_BY: list[str] = []
"""The signals that asked this process to stop, first first (Typer turns the KeyboardInterrupt they raise into
exit 130 before main sees it; this says which signal it was)."""


def _stop(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM stop a job alike: it stores what it received, records and prints its summary. (Forked
    decode workers reset both signals as they start: ``datasets.loading.fork_pool``.)"""
    name = signal.Signals(signum).name
    _STOPPED_BY.append(name)
    raise KeyboardInterrupt(name)


def _stopped(name: str) -> None:
    """The one line a stopped command ends with, and the exit status of the signal."""
    typer.echo(f"stopped by {name} (exit {EXIT_SIGNAL[name]}): what was done is kept; a label job continues where "
               "it stopped when run again", err=True)
    sys.exit(EXIT_SIGNAL[name])


def _store_error(exc: sqlite3.DatabaseError) -> str:
    """What a user can do about an SQLite error: a full disk is theirs to free, anything else needs a check."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return ("the disk that holds the label store is full: free some space, then run the same command again "
                "(every answer committed before is kept)")
    return (f"the label store cannot be read or written ({exc}); `extractor store check --store STORE` says what "
            "is wrong")


def main() -> None:
    """Entry point and the one error boundary.

    Typer itself handles usage errors (its usage message, exit 2). Our user errors print one line and
    exit 1 (75 when the store is busy with another job); anything else is a bug in extractor and says how to
    see its traceback. Ctrl-C and SIGTERM print the interrupted job's summary and exit 130 and 143.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    debug = os.environ.get("EXTRACTOR_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config, args = split_config_flag(sys.argv[1:])
        if config is None:
            app()
        else:  # the job file's tables are the commands' defaults; flags given here override them
            app(args=args, default_map=load_default_map(config, typer.main.get_command(app)))
    except StoreBusy as exc:  # a sibling of the errors below, with its own status: scripts may try again later
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BUSY)
    except (ExtractionError, OSError) as exc:  # OSError: a path the user named, a full disk, a closed pipe
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except sqlite3.DatabaseError as exc:  # the store's file went bad under a job: not our bug
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {_store_error(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # outside a command (Typer exits 130 for one inside, below)
        _stopped(_STOPPED_BY[0] if _STOPPED_BY else "SIGINT")
    except SystemExit as exc:
        if _STOPPED_BY and exc.code == EXIT_SIGNAL["SIGINT"]:
            _stopped(_STOPPED_BY[0])
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"internal error (a bug in extractor): {type(exc).__name__}: {exc}\n"
                   "run again with EXTRACTOR_DEBUG=1 to see the traceback, and please report it", err=True)
        sys.exit(1)
