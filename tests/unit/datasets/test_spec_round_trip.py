"""Stored specs come back as the specs that stored them, and an unknown version is refused."""
import pytest

from extractor.datasets.faces import FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError


@pytest.mark.parametrize("spec", [
    PreprocessSpec(),
    PreprocessSpec(size=48, channels="gray", std=(255.0,)),
    PreprocessSpec(size=224, channels="bgr", mean=(103.9, 116.8, 123.7), std=(58.4, 57.1, 57.4), center_crop=0.875),
])
def test_preprocess_spec_round_trips(spec):
    assert PreprocessSpec.from_data(spec.as_data()) == spec


@pytest.mark.parametrize("spec", [FaceSpec(), FaceSpec(mode="detect", margin=0.3),
                                  FaceSpec(mode="fallback-center", align=True, min_score=0.8)])
def test_face_spec_round_trips(spec):
    assert FaceSpec.from_data(spec.as_data()) == spec


def test_no_face_data_is_no_face_stage():
    assert FaceSpec.from_data(None) == FaceSpec()


@pytest.mark.parametrize("from_data,data", [
    (PreprocessSpec.from_data, {"version": "999", "size": 32}),
    (PreprocessSpec.from_data, {"size": 32}),
    (FaceSpec.from_data, {"version": "999", "mode": "detect"}),
])
def test_unknown_version_is_refused(from_data, data):
    with pytest.raises(ConfigError, match="version"):
        from_data(data)
