"""Deterministic train/held-out splits by content digest, or by group (e.g. person)."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from extractor.errors import ConfigError

SPLIT_SALT = "extractor-split-v1"


def heldout_mask(keys: Sequence[str], fraction: float) -> np.ndarray:
    """True for the keys that fall in the held-out part.

    A key's side depends on the key alone (its salted sha256), never on the other keys, so
    adding images to the pool never moves an image between train and held-out. Pass content
    digests to split images, or group names (people) to hold out whole groups.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--heldout must be in (0, 1), got {fraction}")
    scores = np.array([_unit_interval(key) for key in keys], dtype=np.float64)
    return scores < fraction


def _unit_interval(key: str) -> float:
    digest = hashlib.sha256(f"{SPLIT_SALT}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
