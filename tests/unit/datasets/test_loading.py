"""The decode workers' pool: it always ends, whatever signal handler the parent has."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from extractor.datasets.loading import LoadRequest, load_parallel
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.folder import hash_files, list_files
from tests.images import write_jpegs


def test_a_pool_ended_at_once_never_hangs_under_the_clis_sigterm_handler():
    """The CLI handles SIGTERM in Python; a worker that got the pool's SIGTERM before its own signal reset used to
    live on, and ``terminate()`` joined it forever (within a few dozen pools on two cores)."""
    script = textwrap.dedent("""
        import signal
        from extractor.datasets.loading import fork_pool

        def stop(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        for _ in range(150):
            with fork_pool(2):
                pass
        print("ended")
    """)
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("a pool terminated right after its start hung in terminate()")
    assert result.stdout.strip() == "ended", result.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_load_parallel_keeps_request_order_and_names_unreadable_files(tmp_path, workers):
    write_jpegs(tmp_path, 20)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    files = hash_files(list_files(tmp_path), {})
    spec = PreprocessSpec(size=16)
    with load_parallel((LoadRequest(f.path, f.digest, spec) for f in files), workers) as loaded:
        items = list(loaded)
    assert [item.request.path for item in items] == [f.path for f in files]
    broken = [item for item in items if item.request.path.name == "broken.jpg"]
    assert broken[0].pixels is None and broken[0].reason
    assert all(item.pixels.shape == (16, 16, 3) for item in items if item is not broken[0])
