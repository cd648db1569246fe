"""benchmarks/gpu_suite.py --tiny: all six steps run on the CPU, so the one prepared GPU command keeps working."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets import ASSETS

ROOT = Path(__file__).resolve().parents[2]
CIFAR_PAIR = (ASSETS / "cifar10_jpg" / "train.zip", ASSETS / "teacher_cifar10_winml" / "ImageClassifier.onnx")


@pytest.mark.slow
@pytest.mark.skipif(not all(path.exists() for path in CIFAR_PAIR), reason="the shared CIFAR-10 pair is not present")
def test_tiny_suite_runs_every_step_and_writes_the_json_and_the_table(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--tiny", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, check=False)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    steps = json.loads((tmp_path / "gpu_suite.json").read_text())["steps"]
    assert [step["step"] for step in steps] == [1, 2, 3, 4, 5, 6], output
    assert all(step["status"] for step in steps)
    assert not [step for step in steps if step["status"].startswith("failed")], output
    assert result.returncode == 0, output
    rows = [line for line in (tmp_path / "gpu_suite.md").read_text().splitlines() if re.match(r"\| [1-6] ", line)]
    assert len(rows) == 6
