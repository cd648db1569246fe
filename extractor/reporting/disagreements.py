"""The held-out images on which student and teacher disagree: both answers, the teacher's confidence, and
a small thumbnail of the image as the label job found it, for report.html's gallery."""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from extractor.errors import ExtractionError

log = logging.getLogger(__name__)

GALLERY_CAP = 48
"""Most disagreements report.html shows (the teacher's most confident first)."""
THUMBNAIL_PX = 112
_DIGESTS_PER_QUERY = 400  # LabelStore.labels(digests=...) takes a few hundred at a time


@dataclass(frozen=True)
class Disagreement:
    """One held-out image the student answers differently from the teacher."""

    digest: str
    relative_path: str
    teacher_label: int
    student_label: int
    teacher_confidence: float | None
    """The teacher's probability of its own answer; None for a label-only teacher or without the store."""
    thumbnail: str | None
    """A ``data:image/jpeg;base64,...`` URI, or None when the image file is not found."""


def find_disagreements(run: dict, heldout: pd.DataFrame, cap: int = GALLERY_CAP) -> tuple[int, list[Disagreement]]:
    """(how many held-out images the student and teacher disagree on, up to ``cap`` of them).

    The teacher's answers and the image files are looked up in the run's label store (``run.json``'s
    ``config.store``, relative to the current directory as when it trained); where it is gone, the
    disagreements are still listed, without confidence or image.
    """
    wrong = heldout[heldout["student_label"] != heldout["teacher_label"]]
    if wrong.empty:
        return 0, []
    stored = _stored_answers(run, list(wrong["digest"]))
    confidence = {digest: _confidence(row) for digest, row in stored.items()}
    order = sorted(range(len(wrong)), key=lambda i: (-(confidence.get(wrong["digest"].iloc[i]) or -1.0), i))
    shown = []
    for index in order[:cap]:
        row = wrong.iloc[index]
        entry = stored.get(row["digest"])
        shown.append(Disagreement(digest=row["digest"], relative_path=str(row["relative_path"]),
                                  teacher_label=int(row["teacher_label"]), student_label=int(row["student_label"]),
                                  teacher_confidence=confidence.get(row["digest"]),
                                  thumbnail=_thumbnail(entry, str(row["relative_path"]))))
    return len(wrong), shown


def _stored_answers(run: dict, digests: list[str]) -> dict[str, dict]:
    """digest -> the store's row (label, kind, soft, root, relative_path) for this run's teacher and preprocessing."""
    from extractor.store.label_store import LabelStore

    store = Path(run.get("config", {}).get("store") or "")
    if not store.is_file():
        log.warning("the run's label store %s is not here: the disagreement gallery has no images or confidences",
                    store)
        return {}
    found: dict[str, dict] = {}
    try:
        with LabelStore(store) as labels:
            for start in range(0, len(digests), _DIGESTS_PER_QUERY):
                frame = labels.labels(teacher=run["teacher"]["fingerprint"], preprocess=run["preprocess_fingerprint"],
                                      digests=digests[start:start + _DIGESTS_PER_QUERY])
                found.update({row["digest"]: row for row in frame.to_dict("records")})
    except ExtractionError as exc:
        log.warning("cannot read %s for the disagreement gallery: %s", store, exc)
    return found


def _confidence(row: dict) -> float | None:
    """The teacher's probability of its answer, from what it gave (probabilities, top-k or logits)."""
    soft = row.get("soft")
    if soft is None or row.get("kind") == "label":
        return None
    scores = np.asarray(soft, dtype=np.float64)
    if row.get("kind") == "logits":
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
    label = int(row["label"])
    return float(scores[label]) if 0 <= label < len(scores) else None


def _thumbnail(row: dict | None, relative_path: str) -> str | None:
    from extractor.datasets.decode import ImageDecodeError, decode_image

    if row is None or not row.get("root"):
        return None
    path = Path(row["root"]) / (row.get("relative_path") or relative_path)
    try:
        image = decode_image(path.read_bytes(), min_side=THUMBNAIL_PX)
    except (OSError, ImageDecodeError) as exc:
        log.warning("no thumbnail of %s: %s", path, exc)
        return None
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
