"""The `extractor` command line: the app, its command groups, and the one error boundary."""
from __future__ import annotations

import logging
import os
import sys
import traceback

import typer

from extractor.cli import demo, label, report, train
from extractor.errors import ExtractionError

# rich_markup_mode=None: plain click help and usage errors; rendering them with rich costs ~0.15 s of imports.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Black-box model extraction: label images with an opaque teacher, train a compact "
                       "student on its answers, report what you got.")
store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and export the label store.")
app.add_typer(store_app, name="store")

app.command("label")(label.label)
app.command("train")(train.train)
app.command("chain")(train.chain)
app.command("quantize")(train.quantize)
app.command("report")(report.report)
app.command("export")(report.export)
app.command("demo")(demo.demo)
store_app.command("stats")(report.store_stats)


def main() -> None:
    """Entry point and the one error boundary.

    Typer itself handles usage errors (its usage message, exit 2). Our user errors print one line and
    exit 1; anything else is a bug in extractor and says how to see its traceback.
    """
    debug = os.environ.get("EXTRACTOR_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ExtractionError, OSError) as exc:  # OSError: a path the user named, a full disk, a closed pipe
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"internal error (a bug in extractor): {type(exc).__name__}: {exc}\n"
                   "run again with EXTRACTOR_DEBUG=1 to see the traceback, and please report it", err=True)
        sys.exit(1)
