"""The group commit: invalid answers are keyed under their own teacher and preprocessing, like answers."""
import numpy as np

from extractor.labeling.commit import GroupCommit
from extractor.store.label_store import INVALID_ANSWER, Failure, LabelRow, LabelStore

TEACHER = "t" * 64


def test_an_invalid_answer_of_another_preprocessing_is_not_filed_under_the_pending_one(tmp_path):
    with LabelStore(tmp_path / "labels.db") as store:
        job = store.begin_job("label", "identity", TEACHER, "p" * 64, "/r", {})
        group = GroupCommit(store, job, rows=100, wait_s=3600)
        group.add(TEACHER, "p" * 64, [LabelRow("a" * 64, 0, "probs", np.full(3, 1 / 3, np.float32))])
        group.add(TEACHER, "p" * 64, [LabelRow("b" * 64, 0, "probs", np.full(3, 1 / 3, np.float32))])  # pending
        group.add(TEACHER, "q" * 64, [], failures=[Failure("c.jpg", "c" * 64, INVALID_ANSWER, "NaN")])
        group.flush()
        assert store.invalid_digests(TEACHER, "q" * 64, ["c" * 64]) == {"c" * 64}
        assert store.invalid_digests(TEACHER, "p" * 64, ["c" * 64]) == set()
        assert store.cached_digests(TEACHER, "p" * 64, ["a" * 64, "b" * 64]) == {"a" * 64, "b" * 64}
