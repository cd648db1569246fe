"""Stable hashing: fingerprints of plain data (file digests: datasets.folder; cache keys: store.keys)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

def stable_hash(data: Any) -> str:
    """sha256 of plain data (dicts, lists, str, numbers, bools, None) in canonical JSON.

    Raises:
        TypeError: for values that have no canonical form; a random key would cost queries.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def detector_fingerprint(detector_data: dict) -> str:
    """Keys stored face detections: the detector's settings as plain data (``FaceDetector.as_data()``,
    also kept in the preprocessing spec under "detector")."""
    return stable_hash(detector_data)
