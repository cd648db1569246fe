"""The chain job without training: links, settings, the stop rule, the best child, a rerun."""
import json
from pathlib import Path

import pytest

from extractor.run_dir import CHAIN_FILE, RESULT_FILES
from extractor.schemes.chain import ChainConfig, Link, run_chain, stop_index
from extractor.config import TrainConfig
from extractor.errors import ConfigError
from extractor.students.config import HintConfig


def test_links_parse_architecture_and_width():
    links = Link.parse_list("squeezenet1_1, resnet20:0.5,resnet8:0.25")
    assert links == (Link("squeezenet1_1", 1.0), Link("resnet20", 0.5), Link("resnet8", 0.25))
    assert [link.directory(i) for i, link in enumerate(links)] == [
        "link0_squeezenet1_1_w1.0", "link1_resnet20_w0.5", "link2_resnet8_w0.25"]
    with pytest.raises(ConfigError, match="--links"):
        Link.parse_list("resnet8:half")


@pytest.mark.parametrize("fidelities, stop_drop, expected", [
    ([0.80, 0.78, 0.74, 0.60], 5.0, 2),   # drops 2, 6, 20 points: the first beyond 5 is link 2
    ([0.80, 0.78, 0.76], 5.0, None),      # 4 points is not more than 5
    ([0.80, 0.75, 0.70], 5.0, 2),         # exactly 5 points does not stop; 10 does
    ([0.80, 0.90, 0.60], 0.0, 2),         # a better child never stops the chain
    ([0.80, 0.10], None, None),           # no rule, no stop
])
def test_the_chain_stops_at_the_first_drop_larger_than_p_points(fidelities, stop_drop, expected):
    assert stop_index(fidelities, stop_drop) == expected


def test_chain_settings_are_checked():
    train = TrainConfig(store=Path("s.db"), out=Path("chain"))
    with pytest.raises(ConfigError, match="--links"):
        ChainConfig(train=train, links=())
    with pytest.raises(ConfigError, match="--children"):
        ChainConfig(train=train, links=(Link("resnet8"),), children=0)
    with pytest.raises(ConfigError, match="--stop-drop"):
        ChainConfig(train=train, links=(Link("resnet8"),), stop_drop=-1)


def test_a_rerun_must_repeat_the_chain_but_not_its_progress_flags():
    links = (Link("resnet20"), Link("resnet8", 0.5))
    base = ChainConfig(train=TrainConfig(store=Path("s.db"), out=Path("c"), workers=2), links=links)
    quieter = ChainConfig(train=TrainConfig(store=Path("s.db"), out=Path("c"), workers=1, quiet=True), links=links)
    hinted = ChainConfig(train=TrainConfig(store=Path("s.db"), out=Path("c")), links=links, hint=HintConfig())
    assert base.identity() == quieter.identity() != hinted.identity()


def finished_child(directory: Path, fidelity: float) -> None:
    """A child run as `extractor train` leaves it (the chain reads run.json and copies the files)."""
    directory.mkdir(parents=True)
    for name in RESULT_FILES:
        (directory / name).write_text(f"{name} of {directory.name}")
    (directory / "run.json").write_text(json.dumps({"fidelity": fidelity, "fidelity_to_parent": None,
                                                    "train_seconds": 1.0}))


def test_the_chain_keeps_the_best_child_and_trains_no_link_past_the_stop(tmp_path):
    (tmp_path / "labels.db").touch()
    links = Link.parse_list("resnet20,resnet8,resnet8:0.5,resnet8:0.25")
    cfg = ChainConfig(train=TrainConfig(store=tmp_path / "labels.db", out=tmp_path / "chain"), links=links,
                      children=2, stop_drop=10.0)
    fidelities = {0: (0.70, 0.80), 1: (0.74, 0.72), 2: (0.60, 0.69)}  # best: 80, 74 (-6), 69 (-11: stop)
    for index, pair in fidelities.items():
        for seed, fidelity in enumerate(pair):
            finished_child(tmp_path / "chain" / links[index].directory(index) / f"seed{seed}", fidelity)
    # As a chain killed once its children had finished, before it recorded any link.
    (tmp_path / "chain" / CHAIN_FILE).write_text(json.dumps(
        {"config": json.loads(json.dumps(cfg.identity())), "links": [], "stopped_at": None, "status": "running"}))
    state = run_chain(cfg).data
    assert [entry["chosen"] for entry in state["links"]] == ["seed1", "seed0", "seed1"]
    assert state["stopped_at"] == 2 and state["status"] == "stopped"
    assert not (tmp_path / "chain" / links[3].directory(3)).exists()  # nothing trained past the stop
    link1 = tmp_path / "chain" / links[1].directory(1)
    assert (link1 / "student.onnx").read_text() == "student.onnx of seed0"
    assert json.loads((link1 / "run.json").read_text())["fidelity"] == 0.74
    assert run_chain(cfg).data["links"] == state["links"]  # a rerun of a finished chain trains nothing
    other = ChainConfig(train=cfg.train, links=links, children=2, stop_drop=20.0)
    with pytest.raises(ConfigError, match="other settings"):
        run_chain(other)
