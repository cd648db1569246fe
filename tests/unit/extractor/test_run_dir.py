"""The run directory: what makes a run finished, a chain, resumable; atomic writes; clear errors."""
import json

import pytest
import torch

from extractor.errors import InputNotFound
from extractor.run_dir import CHAIN_FILE, RunDir


def test_a_run_is_finished_only_with_run_json_and_its_onnx_file(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_finished and run.runs() == []
    run.write_run({"fidelity": 0.5})
    assert not run.is_finished  # run.json alone: an interrupted copy
    (tmp_path / "student.onnx").write_bytes(b"onnx")
    assert run.is_finished and run.run() == {"fidelity": 0.5} and run.runs() == [run]
    assert not list(tmp_path.glob("*.partial"))


def test_a_missing_run_says_what_it_is_not(tmp_path):
    with pytest.raises(InputNotFound, match="not a finished training run.*quantize"):
        RunDir(tmp_path).require_finished("quantize")
    with pytest.raises(InputNotFound, match="best.pt is missing"):
        RunDir(tmp_path).best_weights()


def test_best_weights_are_the_checkpoints_model(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {}}, tmp_path / "best.pt")
    assert torch.equal(RunDir(tmp_path).best_weights()["w"], torch.ones(2))


def test_a_chain_reports_its_links_in_order(tmp_path):
    chain = RunDir(tmp_path)
    chain.write_chain_state({"links": [{"dir": "link0"}, {"dir": "link1"}]})
    assert chain.is_chain and json.loads((tmp_path / CHAIN_FILE).read_text())["links"][0]["dir"] == "link0"
    assert [run.path.name for run in chain.runs()] == ["link0", "link1"]


def test_has_checkpoint_means_last_pt(tmp_path):
    assert not RunDir(tmp_path).has_checkpoint
    (tmp_path / "last.pt").write_bytes(b"x")
    assert RunDir(tmp_path).has_checkpoint
