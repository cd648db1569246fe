"""The group commit: invalid answers are keyed under their own teacher and preprocessing, like answers; face
detections held for the job are stored with its next batch, and read back only for images it may still send."""
import numpy as np

from extractor.labeling.commit import GroupCommit
from extractor.store.label_store import INVALID_ANSWER, Failure, LabelRow, LabelStore

TEACHER, DETECTOR = "t" * 64, "d" * 64


def test_an_invalid_answer_of_another_preprocessing_is_not_filed_under_the_pending_one(tmp_path):
    with LabelStore(tmp_path / "labels.db") as store:
        job = store.begin_job("label", "identity", TEACHER, "p" * 64, "/r", {})
        group = GroupCommit(store, job, rows=100, wait_s=3600)
        group.add(TEACHER, "p" * 64, [LabelRow("a" * 64, 0, "probs", np.full(3, 1 / 3, np.float32))])
        group.add(TEACHER, "p" * 64, [LabelRow("b" * 64, 0, "probs", np.full(3, 1 / 3, np.float32))])  # pending
        group.add(TEACHER, "q" * 64, [], failures=[Failure("c.jpg", "c" * 64, INVALID_ANSWER, "NaN")])
        group.flush()
        held = store.holdings(TEACHER, "identity", ["p" * 64, "q" * 64], ["a" * 64, "b" * 64, "c" * 64])
        retried = store.holdings(TEACHER, "identity", ["q" * 64], ["c" * 64], retry_failed=True)
    assert held.invalid == {"p" * 64: set(), "q" * 64: {"c" * 64}}
    assert held.answered == {"p" * 64: {"a" * 64, "b" * 64}, "q" * 64: set()}
    assert held.done("q" * 64) == {"c" * 64} and retried.done("q" * 64) == set()


def test_detections_are_stored_with_the_next_batch_and_read_only_for_images_still_to_send(tmp_path):
    a, b = "a" * 64, "b" * 64
    with LabelStore(tmp_path / "labels.db") as store:
        job = store.begin_job("label", "identity", TEACHER, "p" * 64, "/r", {})
        group = GroupCommit(store, job, rows=100, wait_s=0.0, detector=DETECTOR)
        group.hold_detections([(a, None), (b, '{"box": [0, 0, 1, 1]}')])
        assert store.detections(DETECTOR, [a, b]) == {}  # held, not yet stored
        group.add(TEACHER, "p" * 64, [LabelRow(a, 0, "probs", np.full(3, 1 / 3, np.float32))])
        assert store.detections(DETECTOR, [a, b]) == {a: None, b: '{"box": [0, 0, 1, 1]}'}
        held = store.holdings(TEACHER, "identity", ["p" * 64], [a, b], detector=DETECTOR)
        canary = store.holdings(TEACHER, "identity", ["p" * 64], [a, b], detector=DETECTOR, canary=1)
    assert held.detections == {b: '{"box": [0, 0, 1, 1]}'}  # a is answered: its crop is not needed
    assert canary.detections == {a: None, b: '{"box": [0, 0, 1, 1]}'}  # the canary sends a again
    assert list(canary.canary.index) == [a]
