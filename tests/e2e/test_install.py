"""The installed `extractor` console script, run from a foreign directory the way a user runs it."""
import json
import subprocess
import sys

import pytest

from tests.e2e.cli import installed
from tests.images import write_jpegs
from tests.models import linear_classifier

HEAVY = ("torch", "torchvision", "facenet_pytorch", "ray", "pandas", "matplotlib", "requests")
"""Imported only by the commands (or teachers) that need them: an ONNX `label` starts in well under a second."""


@pytest.fixture
def workdir(tmp_path):
    """A user's folder: a tiny ONNX teacher and a few images, nothing from this repository."""
    write_jpegs(tmp_path / "images", 6)
    linear_classifier(tmp_path / "teacher.onnx", channels=3, size=16)
    return tmp_path


@pytest.fixture
def decoys(tmp_path_factory):
    """A PYTHONPATH entry whose `datasets`, `teachers` and `students` packages fail on import, as
    unrelated packages of those names would: extractor must only ever use its own."""
    root = tmp_path_factory.mktemp("decoys")
    for name in ("datasets", "teachers", "students"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('decoy {name} imported')\n")
    return str(root)


def test_label_works_beside_packages_named_like_its_folders(workdir, decoys):
    env = {"PYTHONPATH": decoys}
    result = installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db",
                       "--workers", "2", "--json", cwd=workdir, env=env)
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["labeled"], summary["failed"]) == (6, 6, 0)
    assert "decoy" not in result.stderr
    help_text = installed("--help", cwd=workdir, env=env).stdout
    assert "label" in help_text and "train" in help_text


def test_mistyped_flag_is_a_usage_error_without_traceback(workdir):
    result = installed("label", "--bogus", cwd=workdir, check=False)
    assert result.returncode == 2
    assert "--bogus" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("teacher,images,message", [
    ("teacher.onnx", "no_such_folder", "is not a directory"),
    ("missing.onnx", "images", "missing.onnx"),
])
def test_user_errors_are_one_line_exit_1(workdir, teacher, images, message):
    result = installed("label", "--teacher", teacher, "--images", images, cwd=workdir, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_onnx_label_path_imports_no_torch(workdir):
    """Runs the installed console entry point in-process, then lists what it imported."""
    probe = (
        "import importlib.metadata, json, sys\n"
        "(entry,) = importlib.metadata.entry_points(group='console_scripts', name='extractor')\n"
        "sys.argv = ['extractor', 'label', '--teacher', 'teacher.onnx', '--images', 'images', "
        "'--store', 'labels.db', '--quiet']\n"
        "try:\n"
        "    entry.load()()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "labeled now     6" in result.stdout
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
