"""Adapters to opaque teacher models."""
from extractor.teachers.base import (
    MalformedAnswer,
    QueryBudgetExceeded,
    Teacher,
    TeacherError,
    TeacherOutput,
    TeacherUnavailable,
)

__all__ = [
    "MalformedAnswer",
    "QueryBudgetExceeded",
    "Teacher",
    "TeacherError",
    "TeacherOutput",
    "TeacherUnavailable",
]
