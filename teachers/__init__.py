"""Adapters to opaque teacher models."""
from teachers.base import (
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
