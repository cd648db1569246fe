"""Opaque-teacher image datasets: folders, decoding, preprocessing, faces, splits."""
