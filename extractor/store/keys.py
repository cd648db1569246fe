"""The store's keys: one per teacher answer, from the content's digest, the teacher and the preprocessing."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

STORE_SCHEMA = "1"  # bump when the meaning of a stored row changes


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
