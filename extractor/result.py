"""What a command hands back: data for `--json`, and text for people."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """A command's outcome: data for `--json`, and text for people."""

    data: dict
    text: str

    def as_dict(self) -> dict:
        return self.data
