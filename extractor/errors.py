"""The errors extractor raises; the CLI maps each to one line and exit code 1."""
from teachers.base import QueryBudgetExceeded, TeacherError, TeacherUnavailable


class ExtractionError(RuntimeError):
    """Base of extractor's own errors."""


class CacheError(ExtractionError):
    """The label store is unreadable, from another schema, or lacks what was asked for."""


class ConfigError(ExtractionError):
    """Flags or a config file that cannot work together."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ExtractionError, TeacherError, ValueError, KeyError, FileNotFoundError, FloatingPointError,
)

__all__ = ["CacheError", "ConfigError", "ExtractionError", "QueryBudgetExceeded", "TeacherError",
           "TeacherUnavailable", "USER_ERRORS"]
