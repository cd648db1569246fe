"""The teacher's source, recorded at label time so that `extractor train` can probe it: never a secret."""
import json

import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError
from extractor.labeling.job import label_dataset
from extractor.store.label_store import LabelStore
from extractor.teachers.source import TeacherSource
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


def test_http_source_keeps_what_reaches_the_teacher_and_no_header_value():
    source = TeacherSource("https://api.example/v2", protocol="kserve-v2", model_name="m",
                           headers=("Authorization: Bearer s3cret",), header_env=("X-Key=API_KEY",), retries=2)
    data = source.as_data()
    assert "s3cret" not in json.dumps(data) and data["header_names"] == ["Authorization"]
    again = TeacherSource.from_data(data)
    assert (again.teacher, again.protocol, again.model_name, again.header_env, again.retries, again.headers) == \
        ("https://api.example/v2", "kserve-v2", "m", ("X-Key=API_KEY",), 2, ())
    assert TeacherSource.from_data(data, teacher="https://other.example/v2").teacher == "https://other.example/v2"


def test_a_url_with_credentials_is_not_stored():
    data = TeacherSource("https://user:pw@api.example/v2?key=abc", protocol="json").as_data()
    assert data["teacher"] is None and "pw" not in json.dumps(data) and "abc" not in json.dumps(data)
    with pytest.raises(ConfigError, match="--teacher-source"):
        TeacherSource.from_data(data)


def test_label_records_the_source_and_a_later_job_without_one_keeps_it(tmp_path):
    write_jpegs(tmp_path / "images", 4)
    teacher = OnnxTeacher(linear_classifier(tmp_path / "t.onnx"))
    cfg = LabelConfig(images=tmp_path / "images", store=tmp_path / "s.db", preprocess=PreprocessSpec(size=16),
                      workers=0, quiet=True)
    with LabelStore(cfg.store) as store:
        label_dataset(cfg, teacher, store, source=TeacherSource(str(tmp_path / "t.onnx")).as_data())
        label_dataset(cfg, teacher, store)
        recorded = store.teacher(teacher.fingerprint)["source"]
    assert TeacherSource.from_data(recorded).teacher == str((tmp_path / "t.onnx").resolve())
