"""How many CPU threads training takes."""
import os

from extractor.training.pipeline import cpu_threads


def test_training_takes_every_core_unless_omp_num_threads_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == os.cpu_count()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    for ignored in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert cpu_threads() == os.cpu_count()
