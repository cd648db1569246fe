"""Stable hashing: fingerprints of plain data, and cache keys (file digests: datasets.folder)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

STORE_SCHEMA = "1"  # bump when the meaning of a stored row changes


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


def cache_key(input_digest: str, teacher_fingerprint: str, preprocess_fingerprint: str) -> str:
    """The store key of one teacher answer."""
    return cache_keys([input_digest], teacher_fingerprint, preprocess_fingerprint)[0]


def cache_keys(input_digests: Sequence[str], teacher_fingerprint: str, preprocess_fingerprint: str) -> list[str]:
    """The store keys of one teacher's answers under one preprocessing, one per input digest (a batch of
    :func:`cache_key`, with the shared part encoded once)."""
    for name, value in (("input digest", all(input_digests)), ("teacher fingerprint", teacher_fingerprint),
                        ("preprocess fingerprint", preprocess_fingerprint)):
        if not value:
            raise ValueError(f"cannot key a cache entry without a {name}")
    shared = f"|{teacher_fingerprint}|{preprocess_fingerprint}|{STORE_SCHEMA}".encode()
    return [hashlib.sha256(digest.encode() + shared).hexdigest() for digest in input_digests]
