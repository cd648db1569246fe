"""Masks secrets (header values) in text before it is raised, logged or stored: exact copies in any case,
and the near copies a careless API echoes (a character dropped, added or changed, or a long piece of one).
"""
from __future__ import annotations

import re
from typing import Iterable

from extractor.teachers.http.config import Secret

MASK = "***"
MIN_NEAR_CHARS = 8
"""Secrets (and words of one) shorter than this are masked only where copied exactly, in any case: shorter
words ("Bearer", "Basic") are too common, and too many words are near a short one."""
MAX_EDITS = 2
"""A word within this many one-character edits (Levenshtein distance) of a secret is masked."""
_WORD = re.compile(r"[A-Za-z0-9_\-.~+/=%]+")  # what an echoed token is made of: base64, JWTs, URL-encoding


class Redactor:
    """Replaces every copy of the given secrets in a text by ``***``; ``repr`` shows how many, never which."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        values: set[str] = set()
        for secret in secrets:
            text = secret.reveal()
            values.add(text)
            values.update(word for word in text.split() if len(word) >= MIN_NEAR_CHARS)  # "Bearer xyz": "xyz" too
        self._exact = tuple(Secret(value) for value in sorted(values, key=len, reverse=True))  # whole values first
        pieces = {piece.lower() for value in values for piece in _WORD.findall(value) if len(piece) >= MIN_NEAR_CHARS}
        self._near = tuple(Secret(piece) for piece in sorted(pieces))

    def __repr__(self) -> str:
        return f"Redactor({len(self._exact)} secrets)"

    def __call__(self, text: str) -> str:
        """``text`` with every exact (any case) and near copy of a secret replaced by ``***``."""
        for secret in self._exact:
            text = re.sub(re.escape(secret.reveal()), MASK, text, flags=re.IGNORECASE)
        if not self._near:
            return text
        return _WORD.sub(lambda word: MASK if self._is_near(word.group()) else word.group(), text)

    def _is_near(self, word: str) -> bool:
        word = word.lower()
        return any(is_near(word, secret.reveal()) for secret in self._near)


def is_near(word: str, secret: str) -> bool:
    """Whether ``word`` is within :data:`MAX_EDITS` edits of ``secret``, or holds a piece of it two thirds as
    long (and :data:`MIN_NEAR_CHARS` long): a secret cut short, or glued to other text. Shorter pieces are
    left: a secret made of words ("not-for-elsewhere") would mask those words everywhere."""
    if abs(len(word) - len(secret)) <= MAX_EDITS and within_edits(word, secret, MAX_EDITS):
        return True
    piece = max(MIN_NEAR_CHARS, -(-2 * len(secret) // 3))
    return len(word) >= piece and any(secret[start:start + piece] in word
                                      for start in range(len(secret) - piece + 1))


def within_edits(a: str, b: str, limit: int) -> bool:
    """Whether the Levenshtein distance of ``a`` and ``b`` is at most ``limit``; stops once every row passes it."""
    previous = list(range(len(b) + 1))
    for row, char in enumerate(a, start=1):
        current = [row]
        for column, other in enumerate(b, start=1):
            current.append(min(previous[column] + 1, current[column - 1] + 1,
                               previous[column - 1] + (char != other)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit
