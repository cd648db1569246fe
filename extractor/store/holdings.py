"""What the store holds about a label job's images, read in one go before the job plans (``LabelStore.holdings``)."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from extractor.store.label_query import keyed_query, shaped

if TYPE_CHECKING:
    import pandas as pd

LOOKUP_CHUNK = 900  # stays under SQLite's default limit of bound parameters
ANSWERED = "SELECT key FROM labels WHERE key IN ({})"
INVALID = ("SELECT i.key FROM invalid_answers i LEFT JOIN labels l ON l.key = i.key "
           "WHERE i.key IN ({}) AND l.key IS NULL")
"""Invalid answers (NaN scores, ...) with no valid answer since: paid for once, not asked about again."""


@dataclass(frozen=True)
class Holdings:
    """A label job's images as the store knows them, for one teacher."""

    answered: dict[str, set[str]]
    """Per preprocessing fingerprint, the digests with an answer."""
    invalid: dict[str, set[str]]
    """Per fingerprint, the digests whose answer was invalid (empty when the job retries them)."""
    sent: int
    """Images that earlier runs of the job sent, retries and requests killed in flight included."""
    source: dict | None
    """How to reach the teacher again, as an earlier job recorded it."""
    detections: dict[str, str | None]
    """Stored face detections (JSON text, None for no face) of the images the job may still ask about, by
    digest; empty without a detector."""
    canary: pd.DataFrame | None
    """The stored answers about the first ``canary`` answered images, by digest; None for no canary."""

    def done(self, preprocess: str) -> set[str]:
        """The digests that need no query under ``preprocess``: answered, or paid for with an invalid answer."""
        return self.answered[preprocess] | self.invalid[preprocess]


def read_holdings(db: sqlite3.Connection, keyed: Mapping[str, Mapping[str, str]], *, plain: str, teacher: str,
                  identity: str, with_invalid: bool, detector: str | None, canary: int) -> Holdings:
    """Reads :class:`Holdings`.

    Args:
        db: the store's connection.
        keyed: per preprocessing fingerprint, cache key -> digest, in the job's order.
        plain: the fingerprint of the plain images (the canary's).
        teacher: the teacher's fingerprint.
        identity: the job's identity (its ledger).
        with_invalid: whether invalid answers count as done (the store has their table, and no retry).
        detector: the face detector's fingerprint, or None.
        canary: how many answered images the canary re-asks about.
    """
    answered = {fp: present(db, ANSWERED, by_key) for fp, by_key in keyed.items()}
    invalid = {fp: present(db, INVALID, {key: digest for key, digest in by_key.items() if digest not in answered[fp]})
               if with_invalid else set() for fp, by_key in keyed.items()}
    row = db.execute("SELECT description FROM teachers WHERE fingerprint = ?", (teacher,)).fetchone()
    picked = dict([(key, digest) for key, digest in keyed[plain].items() if digest in answered[plain]][:canary])
    # Crops are needed only for the images the job may send: the canary's, and those that some preprocessing
    # has no answer for. A rerun with every answer stored reads no detections.
    canary_digests = set(picked.values())
    sendable = [digest for digest in keyed[plain].values() if digest in canary_digests
                or any(digest not in answered[fp] and digest not in invalid[fp] for fp in keyed)]
    return Holdings(answered, invalid, sent=images_sent(db, identity),
                    source=json.loads(row[0]).get("source") if row else None,
                    detections=stored_detections(db, detector, sendable) if detector else {},
                    canary=_label_rows(db, list(picked)) if picked else None)


def present(db: sqlite3.Connection, query: str, by_key: Mapping[str, str]) -> set[str]:
    """The digests whose key ``query`` (with one ``{}`` for the key list) finds."""
    found: set[str] = set()
    for chunk in chunks(list(by_key)):
        rows = db.execute(query.format(",".join("?" * len(chunk))), chunk)
        found.update(by_key[key] for (key,) in rows)
    return found


def images_sent(db: sqlite3.Connection, identity: str) -> int:
    """Images sent to the teacher, retries included, by every job with this identity."""
    (sent,) = db.execute("SELECT COALESCE(SUM(images_sent), 0) FROM requests WHERE identity = ?",
                         (identity,)).fetchone()
    return int(sent)


def stored_detections(db: sqlite3.Connection, detector: str, digests: Iterable[str]) -> dict[str, str | None]:
    """Stored detections (JSON text, or None where no face was found) by digest."""
    found: dict[str, str | None] = {}
    for chunk in chunks(list(digests)):
        marks = ",".join("?" * len(chunk))
        found.update(db.execute(f"SELECT digest, detection FROM detections WHERE detector = ? "
                                f"AND digest IN ({marks})", [detector, *chunk]))
    return found


def chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), LOOKUP_CHUNK):
        yield items[start:start + LOOKUP_CHUNK]


def _label_rows(db: sqlite3.Connection, keys: list[str]) -> pd.DataFrame:
    import pandas as pd  # only a canary pays for it

    query = keyed_query(keys)
    return shaped(pd.read_sql_query(query, db, params=keys)).set_index("digest")
