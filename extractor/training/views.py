"""Training rows for the augmented views the teacher answered for (`extractor label --views`).

Each view's pixels are rebuilt from the decoded images with the view's own deterministic change
(``datasets.views``), so the student sees exactly what the teacher was sent (byte for byte when the student
works at the teacher's input size), with the teacher's own answer about it. The rows of one image share a
``group``: an epoch visits each image once, through one of its views.
"""
from __future__ import annotations

import numpy as np
import torch

from extractor.datasets.views import ViewSpec, apply_view_chw
from extractor.training.answers import TeacherAnswers
from extractor.students.batches import DistilTensors


def with_views(train: DistilTensors, tensors: np.ndarray, train_rows: np.ndarray, answers: TeacherAnswers,
               views: list[tuple[ViewSpec, TeacherAnswers]], temperature: float) -> tuple[DistilTensors, int]:
    """``train`` (the plain rows ``train_rows`` of ``tensors``) plus one row per stored answer about a view of
    a training image.

    Args:
        train: the plain training rows.
        tensors: uint8 (N, C, H, W), every image of ``answers`` decoded for the student.
        train_rows: which rows of ``tensors`` are training images (held-out images get no views).
        answers: the plain answers, in the rows of ``tensors``.
        views: each view with the teacher's answers about it (any subset of ``answers``' images).
        temperature: the distillation temperature.

    Returns:
        The rows with their groups (the image each row shows), and how many view rows were added.
    """
    row_of = {digest: row for row, digest in enumerate(answers.digests)}
    trained = np.zeros(len(answers.digests), dtype=bool)
    trained[train_rows] = True
    parts = [train]
    groups = [torch.from_numpy(np.asarray(train_rows, dtype=np.int64))]
    for view, view_answers in views:
        rows = np.asarray([row_of[digest] for digest in view_answers.digests], dtype=np.int64)
        keep = np.flatnonzero(trained[rows])
        if not len(keep):
            continue
        rows = rows[keep]
        pixels = apply_view_chw(tensors[rows], view, [answers.digests[row] for row in rows])
        parts.append(DistilTensors.from_teacher(
            torch.from_numpy(pixels), torch.from_numpy(view_answers.labels[keep]),
            torch.from_numpy(view_answers.scores[keep]), [view_answers.kinds[i] for i in keep], temperature))
        groups.append(torch.from_numpy(rows))
    added = sum(len(part) for part in parts[1:])
    if not added:
        return train, 0
    return DistilTensors(images=torch.cat([p.images for p in parts]), labels=torch.cat([p.labels for p in parts]),
                         teacher_log_probs=torch.cat([p.teacher_log_probs for p in parts]),
                         soft_mask=torch.cat([p.soft_mask for p in parts]), group=torch.cat(groups)), added
