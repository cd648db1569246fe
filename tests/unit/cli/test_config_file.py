"""`--config FILE.toml`: a file alone, a file under an overriding flag, unknown keys and tables with the closest
valid name, wrong types with the type expected, and job.toml, which builds the same run again."""
from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import typer

from extractor.cli import app as cli_app
from extractor.cli.config_file import load_default_map, split_config_flag
from extractor.config import ProbeConfig, TeacherChoice, TrainConfig
from extractor.errors import ConfigError, InputNotFound
from extractor.result import Result
from extractor.students.config import DistillConfig, HintConfig, OptimConfig, SlimmableConfig, StudentConfig
from extractor.training.tracking import toml_text, train_flags, write_job
from tests.e2e.cli import installed
from tests.images import write_jpegs
from tests.models import linear_classifier


def run_cli(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Runs ``extractor ARGS`` in this process through the real entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["extractor", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def commands():
    return typer.main.get_command(cli_app.app)


@pytest.fixture
def labeled(tmp_path, monkeypatch, capsys):
    """8 random JPEGs labeled by a tiny ONNX teacher from a job file alone (no flag but --config)."""
    monkeypatch.chdir(tmp_path)
    write_jpegs(tmp_path / "images", 8)
    linear_classifier(tmp_path / "teacher.onnx", size=16)
    job = write(tmp_path / "job.toml", '[label]\nteacher = "teacher.onnx"\nimages = "images"\nstore = "answers.db"\n'
                                       'workers = 0\nquiet = true\n\n[export]\nstore = "answers.db"\n'
                                       'out = "from-file.csv"\nformat = "csv"\n')
    code, _, err = run_cli(monkeypatch, capsys, "label", "--config", job)
    assert code == 0, err
    return job


def test_a_file_alone_sets_every_flag(labeled, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "store", "stats", "--store", "answers.db", "--json")
    assert code == 0, err
    assert json.loads(out)["labels"] == 8
    code, _, err = run_cli(monkeypatch, capsys, "export", "--config", labeled)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "from-file.csv")) == 8


def test_a_flag_overrides_the_file(labeled, monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, f"--config={labeled}", "export", "--format", "parquet",
                           "--out", "from-flag.parquet")
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "from-flag.parquet")) == 8 and not (tmp_path / "from-file.csv").exists()


def test_an_unknown_key_or_table_names_the_closest_valid_one(tmp_path, monkeypatch, capsys):
    key = write(tmp_path / "key.toml", "[train]\nbatch_size = 16\n")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--config", key)
    assert code == 1 and err.strip() == f"error: {key}: [train] has no key 'batch_size'; did you mean 'batch-size'?"
    with pytest.raises(ConfigError, match=r"unknown table \[trian\]; did you mean 'train'\?"):
        load_default_map(write(tmp_path / "table.toml", "[trian]\nepochs = 1\n"), commands())
    with pytest.raises(ConfigError, match=r"\[store stats\] has no key 'stor'; did you mean 'store'\?"):
        load_default_map(write(tmp_path / "group.toml", "[store.stats]\nstor = 'a.db'\n"), commands())
    with pytest.raises(ConfigError, match=r"'epochs' is outside any table; put it under one of \[label\]"):
        load_default_map(write(tmp_path / "bare.toml", "epochs = 1\n"), commands())


@pytest.mark.parametrize(("line", "expected"), [
    ('epochs = "ten"', "[train] epochs must be an integer, got str 'ten'"),
    ("epochs = 2.5", "[train] epochs must be an integer, got float 2.5"),
    ("lr = true", "[train] lr must be a number, got bool True"),
    ("hint = 1", "[train] hint must be a boolean (true or false), got int 1"),
    ('teacher = "abc"', "[train] teacher must be a list of strings, got str 'abc'"),
    ('split-by = ["people.csv"]', "[train] split-by must be a list of 2 values (a path (a string), a string)"),
    ("store = 3", "[train] store must be a path (a string), got int 3"),
])
def test_a_wrong_type_names_the_key_and_the_type_expected(tmp_path, line, expected):
    with pytest.raises(ConfigError) as error:
        load_default_map(write(tmp_path / "job.toml", f"[train]\n{line}\n"), commands())
    assert expected in str(error.value)


def test_the_file_becomes_each_commands_defaults(tmp_path):
    job = write(tmp_path / "job.toml", '[train]\nbatch-size = 16\nsandwich = false\nlr = 1\n'
                                       'split-by = ["p.csv", "person"]\n'
                                       'teacher = ["abc", "runs/a:2"]\n[report]\nrun-dir = ["a", "b"]\njson = true\n'
                                       '[store.stats]\nstore = "s.db"\n')
    assert load_default_map(job, commands()) == {
        "train": {"batch_size": 16, "sandwich": False, "lr": 1, "split_by": ["p.csv", "person"],
                  "teacher": ["abc", "runs/a:2"]},
        "report": {"run_dir": ["a", "b"], "as_json": True}, "store": {"stats": {"store": "s.db"}}}


def test_the_config_flag_is_taken_out_of_the_arguments(tmp_path):
    assert split_config_flag(["train", "--config", "a.toml", "--epochs", "2"]) == (Path("a.toml"),
                                                                                 ["train", "--epochs", "2"])
    assert split_config_flag(["--config=a.toml", "train"]) == (Path("a.toml"), ["train"])
    assert split_config_flag(["train", "--", "--config"]) == (None, ["train", "--", "--config"])
    with pytest.raises(ConfigError, match="given twice"):
        split_config_flag(["--config", "a.toml", "--config", "b.toml"])
    with pytest.raises(ConfigError, match="needs a FILE.toml"):
        split_config_flag(["train", "--config"])
    with pytest.raises(InputNotFound, match="does not exist"):
        load_default_map(tmp_path / "missing.toml", commands())
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_default_map(write(tmp_path / "bad.toml", "[train\n"), commands())


def test_job_toml_builds_the_same_train_config_again(tmp_path, monkeypatch, capsys):
    """Every setting a flag reaches goes through job.toml and back through `extractor train --config`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parent").mkdir()
    cfg = TrainConfig(
        store=Path("labels.db"), out=Path("runs/x"), teachers=(TeacherChoice(run=Path("parent")),
                                                                TeacherChoice("3f2a9c", 2.5)),
        student=StudentConfig("resnet8", 1.0, 48), distill=DistillConfig("soft", 0.7, 2.0),
        optim=OptimConfig(epochs=3, batch_size=8, lr=0.002, seed=4), augment=("flip", "crop"), shift_frac=0.2,
        crop_scale=0.6, probe=ProbeConfig(images=32, max_change=0.2, teacher_source="t.onnx", budget=99), views=2,
        heldout=0.25, split_by=(Path("people.csv"), "person"), device="cpu",
        hint=HintConfig(weight=0.5, student_layer="features", parent_layer="layer3"))
    slim = replace(cfg, teachers=(TeacherChoice("3f2a9c"),), hint=None, augment=("auto",), probe=ProbeConfig(),
                   student=StudentConfig("resnet20"), slimmable=SlimmableConfig((1.0, 0.5), "teacher", False))
    seen: list[TrainConfig] = []
    monkeypatch.setattr("extractor.cli.train.run_train", lambda built: seen.append(built) or Result({}, "ok"))
    for original in (cfg, slim):
        job = write_job(original)
        assert job == original.out / "job.toml"
        code, _, err = run_cli(monkeypatch, capsys, "train", "--config", job)
        assert code == 0, err
        assert replace(seen[-1], workers=original.workers, quiet=original.quiet) == original
    flags, notes = train_flags(replace(cfg, optim=replace(cfg.optim, weight_decay=0.0)))
    assert notes == ["weight_decay = 0.0 has no flag (a repeat uses 0.05)"]
    assert tomllib.loads(toml_text({"train": flags}))["train"] == flags


@pytest.mark.slow
def test_job_toml_repeats_a_run_to_the_same_figures(tmp_path):
    for index in range(3):
        write_jpegs(tmp_path / "images" / str(index), 12, seed=10 * index)
    linear_classifier(tmp_path / "teacher.onnx", size=16)
    installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--mean", "127.5",
              "--std", "127.5", "--workers", "1", "--quiet", cwd=tmp_path)
    installed("train", "--store", "labels.db", "--out", "first", "--student", "resnet8", "--size", "32",
              "--epochs", "2", "--batch-size", "8", "--heldout", "0.3", "--seed", "3", "--workers", "1", "--quiet",
              cwd=tmp_path)
    installed("train", "--config", "first/job.toml", "--out", "again", "--workers", "1", "--quiet", cwd=tmp_path)
    first, again = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("first", "again"))
    for key in ("fidelity", "queries", "probe_queries", "train_images", "heldout_images", "epochs", "augment",
                "augment_policy", "student", "teacher"):
        assert again[key] == first[key], key
    assert (tmp_path / "again" / "heldout.csv").read_text() == (tmp_path / "first" / "heldout.csv").read_text()
