"""A teacher that answers NaN for some images: those images fail alone, with their reason, are paid for once,
and are asked again only with --retry-failed; `store stats` counts them apart."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.e2e.cli import installed, installed_json
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier

pytestmark = pytest.mark.timeout(300)


def nan_for_dark_images(path, size=16, classes=3):
    """flatten -> matmul, plus sqrt(mean(input) - 0.1): NaN scores for an image darker than 10% grey."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(0, 1, (3 * size * size, classes))
                                     .astype(np.float32), "weight")
    floor = numpy_helper.from_array(np.array([0.1], np.float32), "floor")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("MatMul", ["flat", "weight"], ["scores"]),
             helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Flatten", ["mean4"], ["mean"]),
             helper.make_node("Sub", ["mean", "floor"], ["above"]),
             helper.make_node("Sqrt", ["above"], ["poison"]),  # NaN where the image is dark
             helper.make_node("Add", ["scores", "poison"], ["output"])]
    graph = helper.make_graph(nodes, "nan_for_dark", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["batch", 3, size, size])], [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["batch", classes])], [weight, floor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_teacher_that_gives_nan_for_two_images_fails_those_two_alone(tmp_path):
    write_jpegs(tmp_path / "images", 30)
    for shade in (1, 2):  # two different contents, both far darker than the model's floor
        Image.new("RGB", (40, 30), (shade * 8,) * 3).save(tmp_path / "images" / f"dark_{shade}.jpg")
    nan_for_dark_images(tmp_path / "teacher.onnx")
    args = ["label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--mean", "0",
            "--std", "255", "--batch-size", "16", "--workers", 0, "--quiet"]
    first = installed_json(*args, cwd=tmp_path)
    assert (first["labeled"], first["failed"], first["queries"]) == (30, 2, 32)
    stats = installed_json("store", "stats", "--store", "labels.db", cwd=tmp_path)
    assert stats["invalid_answers"] == 2 and stats["failures_by_stage"] == {"answer": 2}
    reasons = {row["path"].rsplit("/", 1)[-1]: row["reason"] for row in stats["last_job_failures"]}
    assert sorted(reasons) == ["dark_1.jpg", "dark_2.jpg"]
    assert all(reason.startswith("the teacher's scores for this image are not finite") for reason in reasons.values())
    again = installed(*args, cwd=tmp_path).stdout
    assert "teacher queries 0" in again and "not asked again 2 whose answer was invalid" in again
    retried = installed_json(*args, "--retry-failed", cwd=tmp_path)
    assert (retried["queries"], retried["failed"]) == (2, 2)
    text = installed("store", "stats", "--store", "labels.db", cwd=tmp_path).stdout
    assert "invalid answers 2" in text and "(4 answer)" in text


def test_an_http_answer_with_one_nan_fails_that_image_not_its_request(serve, tmp_path):
    server = serve(tiny_classifier(channels=1, size=32, classes=5), "kserve-v2", fault="nan", fault_times=1)
    write_jpegs(tmp_path / "images", 16)
    args = ["label", "--teacher", server.url, "--protocol", "kserve-v2", "--model-name", "model", "--channels",
            "gray", "--size", "32", "--mean", "127.5", "--std", "127.5", "--request-batch", "8", "--images", "images",
            "--store", "labels.db", "--workers", 0, "--quiet"]
    first = installed_json(*args, cwd=tmp_path)
    assert (first["labeled"], first["failed"]) == (15, 1)
    assert json.loads(installed(*args, "--json", cwd=tmp_path).stdout)["queries"] == 0
    assert server.counts()["images"] == 16
