"""Tests for the quantize job's configuration and the report's variant rows."""
from pathlib import Path

import pytest

from extractor.errors import ConfigError
from extractor.schemes.quantize import QuantizeConfig
from extractor.reporting.variants import slower_than_fp32, variants_markdown


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"bits": 4}, "--bits"),
    ({"bits": 1, "activations": 8}, "--activations"),
    ({"bits": 8, "activations": 1}, "--bits 8"),
    ({"bits": 8, "distill": False}, "--no-distill"),
    ({"bits": 2, "epochs": 0}, "--epochs"),
    ({"bits": 8, "calibration_images": 0}, "--calibration-images"),
])
def test_bad_flags_are_refused_naming_the_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        QuantizeConfig(run=Path("run"), **kwargs)


@pytest.mark.parametrize(("kwargs", "name", "from_parent"), [
    ({"bits": 1}, "binary", True),
    ({"bits": 1, "activations": 1}, "binary-a1", True),
    ({"bits": 2, "distill": False}, "ternary-nodistill", False),
    ({"bits": 2, "distill": False, "from_parent": True}, "ternary-nodistill-fp32init", True),
    ({"bits": 1, "from_parent": False}, "binary-randinit", False),
    ({"bits": 8}, "int8", True),
])
def test_variant_names_say_what_differs_from_the_defaults(kwargs, name, from_parent):
    cfg = QuantizeConfig(run=Path("runs/a"), **kwargs)
    assert cfg.name == name and cfg.out_dir == Path("runs/a") / name
    assert cfg.initialised_from_parent is from_parent
    assert QuantizeConfig(run=Path("runs/a"), out=Path("x"), **kwargs).out_dir == Path("x")


def _row(variant: str, kind: str, bits: int, latency_b1: float) -> dict:
    return {"variant": variant, "kind": kind, "bits": bits, "activation_bits": 32 if bits < 8 else bits,
            "size_bytes": 1000 * bits, "params": 10, "latency_ms": {"1": latency_b1, "64": latency_b1 / 4},
            "fidelity": 0.5, "agreement_with_fp32": 0.9, "accuracy": None}


def test_the_report_says_when_int8_is_slower_than_fp32():
    rows = [_row("fp32", "fp32", 32, 1.0), _row("int8", "int8", 8, 1.5), _row("binary", "binary", 1, 2.0)]
    assert slower_than_fp32(rows) == ["int8"]  # binary runs dequantized float weights: not an int8 claim
    text = variants_markdown(rows)
    assert "int8 is slower than fp32 at batch 1 on this CPU (int8)" in text
    assert "no 1- or 2-bit kernels" in text and "| binary | 1/32 | 1,000 |" in text
    faster = [_row("fp32", "fp32", 32, 1.0), _row("int8", "int8", 8, 0.5)]
    assert slower_than_fp32(faster) == [] and "slower" not in variants_markdown(faster)
