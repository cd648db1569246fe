"""Tests for extractor, teachers, students and datasets."""
