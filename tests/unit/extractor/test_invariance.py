"""The invariance probe and the augmentation policy: a digits teacher is never trained through flips."""
import pytest

from extractor.config import AUTO, LabelConfig, ProbeConfig, TrainConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec
from extractor.labeling.job import label_dataset
from extractor.labeling.preprocess import job_keys
from extractor.store.label_store import LabelStore
from extractor.teachers.onnx import OnnxTeacher
from extractor.teachers.source import TeacherSource
from extractor.training.answers import select_answers
from extractor.training.invariance import MIN_PROBED, OFF, STORED, VIEWS, ProbeResult, choose_policy, run_probe

PROBED = 64


def measured(**changed: float) -> ProbeResult:
    return ProbeResult(images=200, queries=800, changed=changed)


def test_policy_keeps_what_rarely_changes_answers_buys_the_rest_through_views():
    probe = measured(flip=0.49, shift1=0.1, shift=0.2, crop=0.6)
    assert choose_policy(probe, (AUTO,), [], 0.35) == {"flip": OFF, "shift": STORED, "crop": OFF}
    views = [ViewSpec(("flip", "shift"), 1)]
    assert choose_policy(probe, (AUTO,), views, 0.35) == {"flip": VIEWS, "shift": STORED, "crop": OFF}
    assert choose_policy(probe, (AUTO,), [], 0.7) == {"flip": STORED, "shift": STORED, "crop": OFF}


def test_the_changes_of_augmentations_used_with_stored_answers_add_up_to_less_than_the_budget():
    gender = measured(flip=0.04, shift1=0.02, shift=0.08, crop=0.09)  # the dlib gender teacher on LFW faces
    assert choose_policy(gender, (AUTO,), [], 0.1) == {"flip": STORED, "shift": OFF, "crop": OFF}
    assert choose_policy(gender, (AUTO,), [], 0.125) == {"flip": STORED, "shift": STORED, "crop": OFF}
    assert choose_policy(gender, (AUTO,), [], 0.04) == {"flip": OFF, "shift": OFF, "crop": OFF}


def test_without_a_measurement_nothing_is_used_with_the_stored_answer():
    for probe in (None, ProbeResult(0, 0, note="teacher unreachable"),
                  ProbeResult(MIN_PROBED - 1, 0, {"flip": 0.0, "shift": 0.0, "crop": 0.0})):
        assert choose_policy(probe, (AUTO,), [], 0.35) == {"flip": OFF, "shift": OFF, "crop": OFF}
        assert choose_policy(probe, (AUTO,), [ViewSpec(("crop",))], 0.35)["crop"] == VIEWS


def test_an_explicit_augment_list_overrides_the_probe():
    probe = measured(flip=0.9, shift=0.9, crop=0.9)
    assert choose_policy(probe, ("flip",), [], 0.35) == {"flip": STORED, "shift": OFF, "crop": OFF}
    assert choose_policy(probe, (), [], 0.35) == {"flip": OFF, "shift": OFF, "crop": OFF}


def test_teacher_self_agreement_is_the_one_pixel_shift():
    assert measured(shift1=0.25).teacher_self_agreement == 0.75
    assert ProbeResult(0, 0).teacher_self_agreement is None


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's digits teacher (an ONNX CNN) and its 1,797 digits, labeled with the source recorded."""
    from extractor.cli.demo_assets import DEMO_SIZE, build_demo_assets

    folder = tmp_path_factory.mktemp("digits")
    assets = build_demo_assets(folder)
    store = folder / "labels.db"
    cfg = LabelConfig(images=assets.images, store=store, quiet=True, workers=1,
                      preprocess=PreprocessSpec(size=DEMO_SIZE, channels="gray", std=(255.0,)))
    with LabelStore(store) as label_store:
        label_dataset(cfg, OnnxTeacher(assets.teacher), label_store,
                      source=TeacherSource(str(assets.teacher)).as_data())
    return folder, assets, store


@pytest.mark.slow
def test_the_probe_finds_that_flips_change_a_digits_teacher_and_charges_every_query(digits):
    folder, assets, store = digits
    with LabelStore(store) as label_store:
        answers = select_answers(label_store, None)
        label = LabelConfig(images=assets.images, store=store,
                            preprocess=PreprocessSpec.from_data(answers.spec_data["transform"]))
        identity = job_keys(label, answers.teacher["fingerprint"], None).identity  # the label job's ledger
        before = label_store.images_sent(identity)
        probe = run_probe(label_store, answers, ProbeConfig(images=PROBED), shift_frac=0.125, crop_scale=0.75,
                          may_query=True, workers=1, quiet=True)
    assert probe.measured and probe.images == PROBED and probe.queries == 4 * PROBED
    assert probe.changed["flip"] > 0.35  # a mirrored digit is another digit
    assert probe.changed["shift1"] < 0.1  # one pixel of a 4x upsampled digit changes little
    assert choose_policy(probe, (AUTO,), [], 0.35)["flip"] == OFF
    with LabelStore(store) as label_store:
        assert label_store.images_sent(identity) == before + 4 * PROBED  # in the label job's ledger
        again = run_probe(label_store, answers, ProbeConfig(images=PROBED), shift_frac=0.125, crop_scale=0.75,
                          may_query=True, workers=1, quiet=True)
    assert again.queries == 0 and again.changed == probe.changed  # stored like any other answer


@pytest.mark.slow
def test_training_on_digits_never_flips_with_the_stored_answer(digits, tmp_path):
    from extractor.training.pipeline import prepare_data

    folder, assets, store = digits
    data = prepare_data(TrainConfig(store=store, out=tmp_path / "run", workers=1, quiet=True,
                                    probe=ProbeConfig(images=PROBED)))
    assert data.policy["flip"] == OFF and not data.inputs.flip
    assert data.probe is not None and data.probe.changed["flip"] > 0.35


@pytest.mark.slow
def test_an_unreachable_teacher_falls_back_to_the_safe_default(digits, tmp_path):
    folder, assets, store = digits
    with LabelStore(store) as label_store:
        answers = select_answers(label_store, None)
    cfg = ProbeConfig(images=PROBED, teacher_source=str(tmp_path / "gone.onnx"))
    # another crop scale: a probe view never asked about, so the teacher is needed
    with LabelStore(store) as label_store:
        probe = run_probe(label_store, answers, cfg, shift_frac=0.125, crop_scale=0.5, may_query=True, workers=1,
                          quiet=True)
        quiet = run_probe(label_store, answers, ProbeConfig(images=PROBED), shift_frac=0.125, crop_scale=0.5,
                          may_query=False, workers=1, quiet=True)
    assert not probe.measured and "could not be probed" in probe.note
    assert choose_policy(probe, (AUTO,), [], 0.35) == {"flip": OFF, "shift": OFF, "crop": OFF}
    assert not quiet.measured and quiet.queries == 0
