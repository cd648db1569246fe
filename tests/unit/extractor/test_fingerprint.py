import pytest

from extractor.datasets.folder import file_sha256
from extractor.datasets.transforms import PreprocessSpec
from extractor.fingerprint import stable_hash
from extractor.store.keys import cache_key
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


def test_image_digest_triple(tmp_path):
    a, b = write_jpegs(tmp_path, 2)
    copy = tmp_path / "copy_without_extension"
    copy.write_bytes(a.read_bytes())
    assert file_sha256(a) == file_sha256(copy) != file_sha256(b)


def test_preprocess_triple_covers_every_field():
    base = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4)
    variants = [PreprocessSpec(size=64, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4),
                PreprocessSpec(size=48, channels="rgb", mean=(127.5,), std=(127.5,), center_crop=0.4),
                PreprocessSpec(size=48, channels="gray", mean=(0.0,), std=(127.5,), center_crop=0.4),
                PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(255.0,), center_crop=0.4),
                PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.5)]
    same = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4)
    h1, h3 = stable_hash(base.as_data()), stable_hash(same.as_data())
    assert h1 == h3
    assert len({stable_hash(v.as_data()) for v in variants} | {h1}) == len(variants) + 1


def test_teacher_triple(tmp_path):
    h1 = OnnxTeacher(linear_classifier(tmp_path / "a.onnx")).fingerprint
    h2 = OnnxTeacher(linear_classifier(tmp_path / "b.onnx", seed=3)).fingerprint
    h3 = OnnxTeacher(linear_classifier(tmp_path / "c.onnx")).fingerprint
    assert h1 == h3 != h2


def test_cache_key_triple_and_refuses_missing_parts():
    assert cache_key("d", "t", "p") == cache_key("d", "t", "p")
    assert len({cache_key("d", "t", "p"), cache_key("e", "t", "p"), cache_key("d", "u", "p"),
                cache_key("d", "t", "q")}) == 4
    with pytest.raises(ValueError, match="teacher fingerprint"):
        cache_key("d", "", "p")


def test_stable_hash_is_order_free_and_refuses_unhashable():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    with pytest.raises(TypeError):
        stable_hash({"a": object()})
    with pytest.raises(ValueError):
        stable_hash({"a": float("nan")})
