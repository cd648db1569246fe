"""The errors extractor raises for bad input or an unusable teacher; anything else is a bug.

The CLI prints these as one line and exits 1. They also subclass the builtin a caller would
expect (``ConfigError`` is a ``ValueError``, ``InputNotFound`` a ``FileNotFoundError``), so library
users can catch either.
"""


class ExtractionError(Exception):
    """Base of the errors that mean the user's input or environment, not our code, is at fault."""


class ConfigError(ExtractionError, ValueError):
    """A flag, a config value or a file's contents that cannot work; the message names it and what is valid."""


class UnknownNameError(ConfigError, KeyError):
    """A name missing from a registry (student, protocol, ...); the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputNotFound(ExtractionError, FileNotFoundError):
    """A file or folder the user named does not exist or is not what it should be."""


class CacheError(ExtractionError):
    """The label store is unreadable, from another schema, or lacks what was asked for."""


class TeacherError(ExtractionError):
    """The teacher could not answer, or answered something unusable."""


class TeacherUnavailable(TeacherError):
    """The teacher cannot be reached (after bounded retries)."""


class QueryBudgetExceeded(TeacherError):
    """Answering would send more images to the teacher than the budget allows."""


class MalformedAnswer(TeacherError):
    """The teacher answered, but the answer is not a usable prediction."""


class UnreadableAnswer(MalformedAnswer):
    """The answer's body cannot be read at all (not JSON, binary tensors cut short): a transport fault,
    retried like a 5xx; an answer that reads but is wrong (NaN, wrong shape) is a plain MalformedAnswer."""


class CheckpointError(ExtractionError):
    """A training checkpoint cannot be read: cut short by a full disk or a kill, or not a checkpoint."""
