"""The protocols' codecs (teachers/http): requests they build and answers they accept or refuse, without a network."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from extractor.teachers.base import MalformedAnswer, TeacherError, UnreadableAnswer
from extractor.teachers.http.bodies import BINARY_HEADER, parse_body, parse_json
from extractor.teachers.http.codec import ModelInfo, encode_image
from extractor.teachers.http.json_spec import JsonCodec, JsonSpec, parse_path, resolve
from extractor.teachers.http.kserve import KServeV1Codec, KServeV2Codec
from extractor.teachers.http.registry import PROTOCOLS, REGISTRY, factory, make_codec, parse_metadata, protocols_with
from extractor.teachers.http.torchserve import TorchServeCodec

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_parse_path_steps() -> None:
    assert parse_path("") == ()
    assert parse_path("result.scores") == ("result", "scores")
    assert parse_path("predictions[*].label") == ("predictions", None, "label")
    assert parse_path("[*].top[0]") == (None, "top", 0)


@pytest.mark.parametrize("bad", ["a..b", ".a", "a.", "a[x]", "a[*", "a]"])
def test_parse_path_refuses_bad_syntax(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a path like"):
        parse_path(bad)


def test_resolve_walks_keys_indices_and_stars() -> None:
    answer = {"predictions": [{"label": "happy", "top": [1, 2]}, {"label": "sad", "top": [3, 4]}]}
    assert resolve(answer, "predictions[*].label") == ["happy", "sad"]
    assert resolve(answer, "predictions[1].top[0]") == 3
    assert resolve(answer, "") is answer
    with pytest.raises(MalformedAnswer, match="missing key 'labels'"):
        resolve(answer, "predictions[*].labels")
    with pytest.raises(MalformedAnswer, match=r"no item \[5\]"):
        resolve(answer, "predictions[5]")
    with pytest.raises(MalformedAnswer, match="expected a list"):
        resolve({"predictions": {"label": "x"}}, "predictions[*].label")


def test_json_spec_validation_names_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys \\['scroes'\\]; valid keys"):
        JsonSpec.from_dict({"scroes": "result.scores"})
    with pytest.raises(ValueError, match="'input' must be one of"):
        JsonSpec(input="raw", scores="s")
    with pytest.raises(ValueError, match="output 'scores' needs the path 'scores'"):
        JsonSpec()
    with pytest.raises(ValueError, match="output 'label' needs the path 'labels'"):
        JsonSpec(output="label")
    with pytest.raises(ValueError, match="--json-spec 'labels'"):
        JsonSpec(output="label", labels="a..b")
    with pytest.raises(ValueError, match="'fields' apply to JSON bodies"):
        JsonSpec.from_dict({"input": "multipart", "scores": "s", "fields": {"k": 1}})


def test_json_spec_from_toml_and_json_files(tmp_path) -> None:
    toml = tmp_path / "spec.toml"
    toml.write_text('path = "/predict"\nscores = "result.scores"\nbatch = false\n[fields]\ntop_k = 7\n')
    spec = JsonSpec.from_file(toml)
    assert spec == JsonSpec(path="/predict", scores="result.scores", batch=False, fields=(("top_k", 7),))
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps(spec.as_data()))
    assert JsonSpec.from_file(as_json) == spec
    assert spec.as_data() == {"path": "/predict", "scores": "result.scores", "batch": False, "fields": {"top_k": 7}}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid json"):
        JsonSpec.from_file(tmp_path / "bad.json")


def test_kserve_v2_request_and_answer() -> None:
    codec = KServeV2Codec("emotion", "3", "face")
    batch = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2) / 7
    request = codec.encode(batch)
    assert request.path == "/v2/models/emotion/versions/3/infer"
    body = json.loads(request.body)
    tensor = body["inputs"][0]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("face", [2, 1, 2, 2], "FP32")
    assert np.array_equal(np.asarray(tensor["data"], np.float32), batch.ravel())
    scores = np.arange(14, dtype=np.float32).reshape(2, 7)
    answer = {"model_name": "emotion", "model_version": 3,
              "outputs": [{"name": "logits", "shape": [2, 7], "datatype": "FP32", "data": scores.ravel().tolist()}]}
    decoded = codec.decode(answer)
    assert np.array_equal(decoded.scores, scores) and decoded.kind is None and decoded.model_version == "3"


@pytest.mark.parametrize("answer, reason", [
    ({"model_name": "m"}, "no 'outputs' field"),
    ({"outputs": []}, "'outputs' list is empty"),
    ({"outputs": [{"shape": [2, 7], "data": [0.0] * 13}]}, "needs 14 values, 'data' has 13"),
    ({"outputs": [{"shape": [14], "data": [0.0] * 14}]}, r"shape \[14\] is not \(batch, classes\)"),
    ({"outputs": [{"shape": [2, 7], "data": ["x"] * 14}]}, "not a rectangular list of numbers"),
    ({"outputs": [{"shape": [2, 7], "datatype": "BYTES", "data": [0] * 14}]}, "datatype 'BYTES'"),
])
def test_kserve_v2_refuses_malformed_answers(answer: dict, reason: str) -> None:
    with pytest.raises(MalformedAnswer, match=reason):
        KServeV2Codec("m", None, "x").decode(answer)


def binary_body(header: dict, *tensors: np.ndarray) -> tuple[bytes, str]:
    """A body of the binary tensor data extension and its header length, as a server writes it."""
    head = json.dumps(header).encode()
    return head + b"".join(tensor.tobytes() for tensor in tensors), str(len(head))


@pytest.mark.parametrize("datatype, dtype", [("FP32", "<f4"), ("FP16", "<f2"), ("FP64", "<f8")])
def test_kserve_v2_binary_request_is_a_json_header_then_raw_little_endian_values(datatype, dtype) -> None:
    codec = KServeV2Codec("emotion", None, "face", datatype, binary=True)
    batch = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32)
    request = codec.encode(batch)
    assert request.content_type == "application/octet-stream"
    (name, length), = request.headers
    header = json.loads(request.body[: int(length)])
    raw = request.body[int(length):]
    assert name == BINARY_HEADER and header["parameters"] == {"binary_data_output": True}
    tensor = header["inputs"][0]
    assert (tensor["shape"], tensor["datatype"], tensor["parameters"]) == ([2, 1, 3, 3], datatype,
                                                                          {"binary_data_size": 18 * np.dtype(dtype).itemsize})
    assert "data" not in tensor and np.array_equal(np.frombuffer(raw, dtype), batch.ravel().astype(dtype))


def test_kserve_v2_binary_request_names_its_output_in_binary() -> None:
    codec = KServeV2Codec("m", None, "x", output_name="probs", request_output=True, binary=True)
    request = codec.encode(np.zeros((1, 1, 2, 2), np.float32))
    header = json.loads(request.body[: int(dict(request.headers)[BINARY_HEADER])])
    assert header["outputs"] == [{"name": "probs", "parameters": {"binary_data": True}}]


def test_kserve_v2_binary_answer_is_read_into_the_outputs() -> None:
    logits, probs = np.arange(14, dtype="<f4").reshape(2, 7), np.full((2, 7), 1 / 7, "<f2")
    header = {"model_version": "1", "outputs": [
        {"name": "logits", "shape": [2, 7], "datatype": "FP32", "parameters": {"binary_data_size": 56}},
        {"name": "probs", "shape": [2, 7], "datatype": "FP16", "parameters": {"binary_data_size": 28}}]}
    answer = parse_body(*binary_body(header, logits, probs))
    assert np.array_equal(KServeV2Codec("m", None, "x").decode(answer).scores, logits)
    decoded = KServeV2Codec("m", None, "x", output_name="probs").decode(answer)
    assert decoded.scores.dtype == np.float32 and np.allclose(decoded.scores, 1 / 7, atol=1e-3)
    mixed = {"outputs": [{"name": "a", "shape": [1, 2], "data": [1, 2]},
                         {"name": "b", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    answer = parse_body(*binary_body(mixed, np.array([3, 4], "<f4")))  # JSON and binary outputs side by side
    assert KServeV2Codec("m", None, "x", output_name="b").decode(answer).scores.tolist() == [[3, 4]]


@pytest.mark.parametrize("cut, reason", [
    (lambda body, length: (body[:-4], length), "cut short"),
    (lambda body, length: (body + b"\0\0\0\0", length), "4 bytes after its outputs"),
    (lambda body, length: (body[:20], length), "but the body has 20 bytes"),
    (lambda body, length: (body, "abc"), "not a length"),
    (lambda body, length: (b"[" + body[1:], length), "not JSON"),
])
def test_binary_answers_that_do_not_add_up_are_unreadable(cut, reason) -> None:
    header = {"outputs": [{"name": "o", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    body, length = binary_body(header, np.array([1, 2], "<f4"))
    with pytest.raises(UnreadableAnswer, match=reason):
        parse_body(*cut(body, length))


def test_a_binary_answer_of_the_wrong_size_for_its_shape_is_malformed_not_unreadable() -> None:
    header = {"outputs": [{"name": "o", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    answer = parse_body(*binary_body(header, np.array([1, 2], "<f4")))
    with pytest.raises(MalformedAnswer, match="needs 3 values, 'data' has 2") as caught:
        KServeV2Codec("m", None, "x").decode(answer)
    assert not isinstance(caught.value, UnreadableAnswer)


def test_kserve_v2_picks_the_named_output() -> None:
    codec = KServeV2Codec("m", None, "x", output_name="probs", request_output=True)
    assert json.loads(codec.encode(np.zeros((1, 1, 2, 2), np.float32)).body)["outputs"] == [{"name": "probs"}]
    answer = {"outputs": [{"name": "logits", "shape": [1, 2], "data": [5, 6]},
                          {"name": "probs", "shape": [1, 2], "data": [0.25, 0.75]}]}
    assert codec.decode(answer).scores.tolist() == [[0.25, 0.75]]
    with pytest.raises(MalformedAnswer, match="no output 'probs'; it has \\['logits'\\]"):
        codec.decode({"outputs": answer["outputs"][:1]})


def test_kserve_v1_nested_instances_and_named_rows() -> None:
    codec = KServeV1Codec("m", None)
    batch = np.random.default_rng(0).random((2, 1, 3, 3), dtype=np.float32)
    request = codec.encode(batch)
    assert request.path == "/v1/models/m:predict"
    assert np.array_equal(np.asarray(json.loads(request.body)["instances"], np.float32), batch)
    assert codec.decode({"predictions": [[1, 2], [3, 4]]}).scores.tolist() == [[1, 2], [3, 4]]
    rows = {"predictions": [{"probabilities": [0.1, 0.9], "classes": 1}, {"probabilities": [0.8, 0.2], "classes": 0}]}
    with pytest.raises(MalformedAnswer, match="--output-name"):
        codec.decode(rows)
    assert KServeV1Codec("m", "2", "probabilities").decode(rows).scores.shape == (2, 2)
    with pytest.raises(MalformedAnswer, match="one list of scores per image"):
        codec.decode({"predictions": [1, 2, 3]})


def test_torchserve_maps_labels_to_classes() -> None:
    codec = TorchServeCodec("emotion", None, CLASSES)
    request = codec.encode([np.full((4, 4, 1), 7, np.uint8)])
    assert request.path == "/predictions/emotion" and request.content_type == "image/png"
    top = codec.decode({"happy": 0.7, "sad": 0.2, "neutral": 0.1})
    assert top.kind == "topk" and top.scores.tolist()[0] == pytest.approx([0, 0, 0, 0.7, 0.2, 0, 0.1])
    full = codec.decode([{name: 1 / 7 for name in CLASSES}])
    assert full.kind == "probs"
    with pytest.raises(MalformedAnswer, match="class 'contempt', which is not among --classes"):
        codec.decode({"happy": 0.9, "contempt": 0.1})
    with pytest.raises(MalformedAnswer, match="names no classes"):
        codec.decode({})
    with pytest.raises(MalformedAnswer, match="expected a \\{label: score\\} object, got list"):
        codec.decode([0.9, 0.1])
    with pytest.raises(ValueError, match="one image per request"):
        codec.encode([np.zeros((4, 4), np.uint8)] * 2)


def test_encode_image_is_lossless_png() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(pixels, "png")))), pixels)
    gray = pixels[:, :, :1]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(gray, "png")))), gray[:, :, 0])
    with pytest.raises(TypeError, match="uint8"):
        encode_image(pixels.astype(np.float32), "png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        encode_image(pixels[:, :, :2], "png")


def test_json_codec_base64_batch_and_fields() -> None:
    spec = JsonSpec(path="/predict", input_key="data.images", scores="result.scores", fields=(("top_k", 7),))
    pixels = np.random.default_rng(2).integers(0, 256, (2, 5, 5, 1), dtype=np.uint8)
    request = JsonCodec(spec, ()).encode(list(pixels))
    body = json.loads(request.body)
    assert request.path == "/predict" and body["top_k"] == 7
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(item)))) for item in body["data"]["images"]]
    assert np.array_equal(np.stack(decoded), pixels[..., 0])


def test_json_codec_single_tensor_and_multipart() -> None:
    tensor = JsonCodec(JsonSpec(input="tensor", input_key="x", batch=False, scores="y"), ())
    batch = np.ones((1, 1, 2, 2), np.float32)
    assert json.loads(tensor.encode(batch).body) == {"x": batch[0].tolist()}
    assert tensor.decode({"y": [0.2, 0.8]}).scores.tolist() == [pytest.approx([0.2, 0.8])]
    with pytest.raises(ValueError, match="one image per request"):
        tensor.encode(np.ones((2, 1, 2, 2), np.float32))
    multipart = JsonCodec(JsonSpec(input="multipart", input_key="file", image_format="jpeg", scores="s"), ())
    request = multipart.encode([np.zeros((8, 8, 3), np.uint8)] * 2)
    assert request.body is None and [name for name, _ in request.files] == ["file", "file"]
    assert request.files[0][1][2] == "image/jpeg" and request.files[0][1][1][:2] == b"\xff\xd8"


def test_json_codec_topk_and_label_answers() -> None:
    names = ("cat", "dog", "bird")
    parallel = JsonCodec(JsonSpec(output="topk", labels="predictions[*].labels",
                                  scores="predictions[*].scores"), names)
    answer = {"predictions": [{"labels": ["dog", "cat"], "scores": [0.6, 0.3]},
                              {"labels": [2, 0], "scores": [0.9, 0.05]}]}
    top = parallel.decode(answer)
    assert top.kind == "topk" and top.scores.tolist() == [pytest.approx([0.3, 0.6, 0]), pytest.approx([0.05, 0, 0.9])]
    mapping = JsonCodec(JsonSpec(output="topk", scores="[*]"), names).decode([{"cat": 0.5, "dog": 0.3, "bird": 0.2}])
    assert mapping.kind == "probs"
    labels = JsonCodec(JsonSpec(output="label", labels="predictions[*].label", model_version="meta.version"), names)
    decoded = labels.decode({"meta": {"version": 4}, "predictions": [{"label": "bird"}, {"label": 0}]})
    assert decoded.labels.tolist() == [2, 0] and decoded.kind == "label" and decoded.model_version == "4"
    with pytest.raises(MalformedAnswer, match="'lion', which is not among --classes"):
        labels.decode({"meta": {"version": 4}, "predictions": [{"label": "lion"}]})
    with pytest.raises(MalformedAnswer, match="class index 3; --classes has 3 classes"):
        labels.decode({"meta": {"version": 4}, "predictions": [{"label": 3}]})
    with pytest.raises(MalformedAnswer, match="twice"):
        parallel.decode({"predictions": [{"labels": ["dog", "dog"], "scores": [0.5, 0.5]}]})
    with pytest.raises(MalformedAnswer, match="expected a list before"):
        parallel.decode({"predictions": {"labels": [], "scores": []}})
    with pytest.raises(MalformedAnswer, match="one entry per image"):
        JsonCodec(JsonSpec(scores="result"), names).decode({"result": {"cat": 1.0}})


def test_parse_metadata_v2_and_tf_serving() -> None:
    v2 = {"name": "m", "versions": ["1", "2"], "inputs": [{"name": "face", "datatype": "FP32", "shape": [-1, 1, 48, 48]}],
          "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 7]}]}
    info = parse_metadata("kserve-v2", v2)
    assert info == ModelInfo(("1", "2"), "face", "FP32", (None, 1, 48, 48), (("logits", 7),))
    tf = {"model_version_status": [{"version": "3", "state": "AVAILABLE"}, {"version": "2", "state": "END"}]}
    assert parse_metadata("kserve-v1", tf).versions == ("3",)
    assert parse_metadata("kserve-v1", {"name": "m", "ready": True}) == ModelInfo()
    with pytest.raises(TeacherError, match="one image input"):
        parse_metadata("kserve-v2", {"inputs": [{"name": "a"}, {"name": "b"}]})


def test_make_codec_fills_gaps_from_metadata() -> None:
    info = ModelInfo(input_name="face", input_datatype="FP32", outputs=(("logits", 7),))
    codec = make_codec("kserve-v2", model="m", version=None, class_names=(), spec=None,
                       input_name=None, output_name=None, info=info)
    assert codec == KServeV2Codec("m", None, "face", "FP32", "logits")
    with pytest.raises(TeacherError, match="pass --input-name"):
        make_codec("kserve-v2", model="m", version=None, class_names=(), spec=None,
                   input_name=None, output_name=None, info=ModelInfo())
    with pytest.raises(TeacherError, match="--output-name 'probs' is not a model output; valid: \\['logits'\\]"):
        make_codec("kserve-v2", model="m", version=None, class_names=(), spec=None,
                   input_name=None, output_name="probs", info=info)


def test_parse_json_reason() -> None:
    assert parse_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(UnreadableAnswer, match="not JSON"):
        parse_json(b'{"outputs": [')
    assert np.isnan(parse_json(b'{"a": NaN}')["a"])  # Python servers write NaN: it reads, for decode to refuse


def test_registry_names_every_protocol_and_what_each_takes() -> None:
    assert PROTOCOLS == ("kserve-v2", "kserve-v1", "torchserve", "json") == tuple(REGISTRY)
    assert factory("torchserve") is TorchServeCodec
    with pytest.raises(KeyError, match="unknown protocol 'grpc'; valid protocols: kserve-v2, kserve-v1"):
        factory("grpc")
    assert protocols_with("output_name") == ("kserve-v2", "kserve-v1")
    assert protocols_with("tensor_format") == protocols_with("input_name") == ("kserve-v2",)
    assert protocols_with("json_spec") == ("json",)
    assert [codec.batches(None) for codec in REGISTRY.values()] == [True, True, False, True]
    assert not JsonCodec.batches(JsonSpec(scores="s", batch=False)) and not JsonCodec.dense(JsonSpec(
        output="label", labels="l"))


def test_only_kserve_v2_reads_the_binary_tensor_header() -> None:
    header = {"outputs": [{"name": "o", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    body, length = binary_body(header, np.array([1, 2], "<f4"))
    answer = KServeV2Codec("m", None, "x").parse(body, {BINARY_HEADER: length})
    assert KServeV2Codec("m", None, "x").decode(answer).scores.tolist() == [[1, 2]]
    json_body = json.dumps({"predictions": [[1, 2]]}).encode()
    assert KServeV1Codec("m", None).parse(json_body, {BINARY_HEADER: "3"}) == {"predictions": [[1, 2]]}
