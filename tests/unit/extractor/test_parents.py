"""A trained run as a teacher: its answers come through the label job into the store, cost the black box
nothing, and combine with other teachers' answers like any teacher's."""
import json

import numpy as np
import pytest
import torch

from extractor.config import LabelConfig, TeacherChoice, TrainConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError
from extractor.labeling.job import label_dataset
from extractor.labeling.preprocess import job_keys
from extractor.store.label_store import LabelStore
from extractor.students.config import DistillConfig, OptimConfig, StudentConfig
from extractor.teachers.onnx import OnnxTeacher
from extractor.training.pipeline import prepare_data
from extractor.training.recipe import train_student
from tests.images import write_jpegs
from tests.models import linear_classifier

STUDENT = StudentConfig(architecture="resnet8", width=0.25, size=32)


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory):
    """A store labeled by a tiny black box, and a one-epoch run distilled from it."""
    root = tmp_path_factory.mktemp("parents")
    write_jpegs(root / "images", 30)
    black_box = OnnxTeacher(linear_classifier(root / "teacher.onnx", size=16))
    label = LabelConfig(images=root / "images", store=root / "labels.db", preprocess=PreprocessSpec(size=16),
                        workers=0, quiet=True)
    with LabelStore(label.store) as store:
        label_dataset(label, black_box, store)
    train_student(TrainConfig(store=label.store, out=root / "parent", student=STUDENT, workers=0, quiet=True,
                              optim=OptimConfig(epochs=1, batch_size=16)))
    identity = job_keys(label, black_box.fingerprint, None).identity
    return root, black_box.fingerprint, identity


def child_config(root, out, *teachers, **changes):
    return TrainConfig(store=root / "labels.db", out=root / out, teachers=teachers, student=STUDENT, workers=0,
                       quiet=True, **changes)


def ledger(store_path):
    with LabelStore(store_path) as store:
        return {row["identity"]: (row["requests"], row["images_sent"]) for row in store.stats()["requests"]}


def test_a_parent_run_labels_through_the_store_and_never_queries_the_black_box(parent_run):
    root, black_box, identity = parent_run
    before = ledger(root / "labels.db")
    data = prepare_data(child_config(root, "child", TeacherChoice(run=root / "parent")))
    after = ledger(root / "labels.db")
    assert after[identity] == before[identity]  # 0 new requests for the black box
    (parent_identity,) = set(after) - set(before)
    assert after[parent_identity][1] == 30  # the parent answered every image, once
    assert data.answers.teacher["fingerprint"] == black_box  # held-out fidelity refers to the black box
    (parent, taught), = data.parents
    assert taught.teacher["run"].endswith("parent") and taught.teacher["fingerprint"] != black_box
    assert torch.equal(data.heldout.labels, torch.from_numpy(data.answers.labels[data.held_rows]))
    prepare_data(child_config(root, "child_again", TeacherChoice(run=root / "parent")))
    assert ledger(root / "labels.db") == after  # a rerun costs nothing at all
    # The store now holds two teachers' answers; the default teacher is still the black box.
    assert prepare_data(child_config(root, "plain")).answers.teacher["fingerprint"] == black_box


def test_a_black_box_and_a_run_combine_into_the_hand_computed_weighted_mean(parent_run):
    root, black_box, _ = parent_run
    temperature = 2.0
    data = prepare_data(child_config(root, "mixed", TeacherChoice(black_box[:12], 1.0),
                                     TeacherChoice(run=root / "parent", weight=3.0),
                                     distill=DistillConfig(temperature=temperature)))
    digests = [data.answers.digests[i] for i in data.train_rows]
    with LabelStore(root / "labels.db") as store:
        frame = store.labels()
    logits = {fingerprint: np.stack([group.set_index("digest").loc[d, "soft"] for d in digests])
              for fingerprint, group in frame.groupby("teacher")}
    parent = data.parents[0][1].teacher["fingerprint"]

    def tempered(z):  # both teachers gave logits: softmax(z / T)
        e = np.exp(z / temperature - (z / temperature).max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    expected = (1.0 * tempered(logits[black_box]) + 3.0 * tempered(logits[parent])) / 4.0
    assert np.allclose(data.train.teacher_log_probs.exp().numpy(), expected, atol=1e-5)
    assert data.train.labels.tolist() == expected.argmax(axis=1).tolist()


def test_a_child_holds_out_what_its_parent_held_out(parent_run):
    root, _, _ = parent_run
    with pytest.raises(ConfigError, match="--heldout 0.3"):
        prepare_data(child_config(root, "other_split", TeacherChoice(run=root / "parent"), heldout=0.3))


def test_a_teacher_flag_naming_a_directory_is_a_run(parent_run):
    root, _, _ = parent_run
    assert TeacherChoice.parse(f"{root / 'parent'}:2") == TeacherChoice(run=root / "parent", weight=2.0)
    assert TeacherChoice.parse("ab12:0.5") == TeacherChoice("ab12", 0.5)
    assert TeacherChoice(**json.loads(json.dumps({"prefix": "", "weight": 1.0, "run": str(root)}))).run == root
