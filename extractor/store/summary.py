"""A store's counts in one dict (`extractor store stats`): answers by source, files, jobs, failures, the ledger."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from extractor.store.journal import LOST, SENDING
from extractor.store.schema import has_table


def summarize(db: sqlite3.Connection, path: Path) -> dict:
    """Counts by teacher and preprocessing, jobs, failures (by stage; ``invalid_answers``: contents whose
    answer was invalid and not since answered) and the request ledger (``lost``: requests in flight when
    their job was killed, counted as sent)."""
    query = db.execute
    by_source = query("SELECT teacher, preprocess, kind, answers FROM label_counts WHERE answers > 0").fetchall()
    answers = sum(count for *_, count in by_source)
    # One teacher and preprocessing: one answer per content. Several: count the contents (a scan).
    images = answers if len({(t, p) for t, p, *_ in by_source}) <= 1 else \
        query("SELECT COUNT(DISTINCT digest) FROM labels").fetchone()[0]
    ledger = query("SELECT identity, COUNT(*), SUM(images), SUM(images_sent), SUM(retries), "
                   "SUM(status NOT IN ('ok', '200')), AVG(latency_s), MAX(latency_s), "
                   f"SUM(status IN ('{SENDING}', '{LOST}')) FROM requests GROUP BY identity").fetchall()
    invalid = query("SELECT COUNT(*) FROM invalid_answers i LEFT JOIN labels l ON l.key = i.key "
                    "WHERE l.key IS NULL").fetchone()[0] if has_table(db, "invalid_answers") else 0
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "labels": answers,
        "images": images,
        "files": query("SELECT count FROM row_counts WHERE name = 'files'").fetchone()[0],
        "by_teacher": [{"teacher": t, "preprocess": p, "kind": k, "labels": n} for t, p, k, n in by_source],
        "jobs": [dict(zip(("id", "kind", "status", "started", "finished", "summary"), row[:5] + (
            json.loads(row[5]) if row[5] else None,))) for row in query(
            "SELECT id, kind, status, started, finished, summary FROM jobs ORDER BY id")],
        "failures": query("SELECT COUNT(*) FROM failures").fetchone()[0],
        "failures_by_stage": dict(query("SELECT stage, COUNT(*) FROM failures GROUP BY stage ORDER BY stage")),
        "invalid_answers": invalid,
        "detections": query("SELECT COUNT(*) FROM detections").fetchone()[0],
        "requests": [dict(zip(("identity", "requests", "images", "images_sent", "retries", "errors",
                               "mean_latency_s", "max_latency_s", "lost"), row)) for row in ledger],
    }
