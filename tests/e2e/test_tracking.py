"""`extractor train --log tensorboard|mlflow`: the event files read back with TensorBoard's own reader, and the
MLflow run read back through MLflow's client, hold what metrics.jsonl holds, the configuration and the final
figures; without the extra, the flag says how to install it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from extractor.cli import app as cli_app
from tests.e2e.cli import console_script, installed
from tests.images import write_jpegs
from tests.models import linear_classifier

TRAIN = ["train", "--store", "labels.db", "--student", "resnet8", "--size", "32", "--epochs", "2", "--batch-size", "8",
         "--heldout", "0.3", "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    for index in range(3):
        write_jpegs(root / "images" / str(index), 12, seed=10 * index)
    linear_classifier(root / "teacher.onnx", size=16)
    installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--mean", "127.5",
              "--std", "127.5", "--workers", "1", "--quiet", cwd=root)
    return root


def metric_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def expected_scalars(run_dir) -> dict[str, dict[int, float]]:
    """tag -> {step: value}: every number metrics.jsonl holds, under the names the trackers use."""
    expected: dict[str, dict[int, float]] = {}
    for record in metric_records(run_dir):
        for name, value in record.items():
            if name in ("step", "split", "epoch"):
                continue
            expected.setdefault(f"{record['split']}/{name}", {})[record["step"]] = value
        if record["split"] == "heldout":
            expected.setdefault("epoch", {})[record["step"]] = record["epoch"]
    return expected


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_metric_the_config_and_the_final_figures(labeled):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    installed(*TRAIN, "--out", "tb", "--log", "tensorboard", cwd=labeled)
    run_dir = labeled / "tb"
    assert list(run_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    expected = expected_scalars(run_dir)
    assert {"train/loss", "train/hard", "train/soft", "train/lr", "heldout/fidelity", "epoch"} <= set(expected)
    for tag, by_step in expected.items():
        logged = {event.step: event.value for event in events.Scalars(tag)}
        assert logged == pytest.approx(by_step, rel=1e-6), tag  # float32 in the event file
    run = json.loads((run_dir / "run.json").read_text())
    (final,) = events.Scalars("final/fidelity")
    assert final.value == pytest.approx(run["fidelity"]) and final.step == max(expected["train/loss"])
    assert {"final/kappa", "final/majority_baseline", "final/queries"} <= set(events.Tags()["scalars"])
    job = events.Tensors("config/job.toml/text_summary")[0].tensor_proto.string_val[0].decode()
    assert tomllib.loads(job.strip("`\n").removeprefix("toml\n"))["train"]["out"] == "tb"


@pytest.mark.slow
def test_an_mlflow_run_holds_every_metric_the_config_and_the_final_figures(labeled):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    # The documented default: no MLFLOW_TRACKING_URI, so the run lands in ./mlruns/mlflow.db.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    subprocess.run([console_script(), *TRAIN, "--out", "ml", "--log", "mlflow"], cwd=labeled, env=env, check=True,
                   capture_output=True, timeout=600)
    client = MlflowClient(f"sqlite:///{labeled / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("extractor")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "ml" and run.info.status == "FINISHED"
    for tag, by_step in expected_scalars(labeled / "ml").items():
        logged = {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, tag)}
        assert logged == pytest.approx(by_step), tag
    job = tomllib.loads((labeled / "ml" / "job.toml").read_text())["train"]
    assert run.data.params == {key: ",".join(map(str, value)) if isinstance(value, list) else str(value)
                               for key, value in job.items()}
    figures = json.loads((labeled / "ml" / "run.json").read_text())
    assert run.data.metrics["final/fidelity"] == pytest.approx(figures["fidelity"])
    assert run.data.metrics["final/queries"] == figures["queries"]
    assert [artifact.path for artifact in client.list_artifacts(run.info.run_id)] == ["job.toml"]


def run_cli(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["extractor", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_without_the_extra_the_flag_says_how_to_install_it(kind, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, kind, None)  # importing it now raises ImportError, as where it is missing
    code, err = run_cli(monkeypatch, capsys, "train", "--store", tmp_path / "labels.db", "--log", kind)
    assert code == 1
    assert err.strip() == f'error: --log {kind} needs the {kind} extra: pip install "extractor-distill[{kind}]"'
    code, err = run_cli(monkeypatch, capsys, "train", "--store", tmp_path / "labels.db", "--log", "wandb")
    assert code == 1 and "--log must be one of tensorboard, mlflow, got 'wandb'" in err
