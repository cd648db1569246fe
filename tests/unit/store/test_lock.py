"""One writer per store: the lock file, its holder, stale locks of killed jobs, and waiting for a busy store."""
import json
import multiprocessing
import os
import signal
import socket
import time

import pytest

from extractor.store.lock import STALE_AFTER_S, StoreBusy, StoreLock, lock_path, read_holder


def _hold(store, job, ready, release):
    """Holds the store's lock in another process, as job ``job``, until ``release`` is set."""
    with StoreLock(store, "label") as lock:
        lock.set_job(job)
        ready.set()
        release.wait(60)


def _hold_fork_and_die(store, ready):
    """Takes the lock, forks a child that outlives this process (as a decode worker could), and is killed -9."""
    StoreLock(store, "label").acquire()
    if os.fork() == 0:  # the child sleeps on; it must not keep the lock
        time.sleep(30)
        os._exit(0)
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def spawn():
    context = multiprocessing.get_context("fork")
    started = []

    def start(target, *args):
        ready, release = context.Event(), context.Event()
        process = context.Process(target=target, args=(*args, ready) if target is _hold_fork_and_die
                                  else (*args, ready, release))
        process.start()
        assert ready.wait(30)
        started.append((process, release))
        return process, release

    yield start
    for process, release in started:
        release.set()
        process.join(10)


def test_a_second_holder_is_told_who_holds_the_store(tmp_path, spawn):
    store = tmp_path / "labels.db"
    holder, release = spawn(_hold, store, 7)
    with pytest.raises(StoreBusy, match=rf"store .* is busy \(label job 7, pid {holder.pid}, since .*\); "
                                        r"--wait-for-store SECONDS waits for it"):
        StoreLock(store, "label").acquire()
    release.set()
    holder.join(10)
    with StoreLock(store, "label") as lock:
        assert lock.took_over is None  # released properly: nobody to take over from
        assert read_holder(store).pid == os.getpid()
    assert read_holder(store) is None  # released


def test_a_waiting_job_gets_the_store_when_its_holder_is_done(tmp_path, spawn):
    store = tmp_path / "labels.db"
    holder, release = spawn(_hold, store, 1)
    started = time.monotonic()
    waiter = StoreLock(store, "label", wait_s=30)
    context = multiprocessing.get_context("fork")
    releaser = context.Process(target=lambda: (time.sleep(0.5), release.set()))
    releaser.start()
    with waiter:
        assert 0.4 < time.monotonic() - started < 10
    releaser.join(10)
    holder.join(10)
    spawn(_hold, store, 2)
    started = time.monotonic()
    with pytest.raises(StoreBusy, match=r"label job 2, .*waited 0.3 s"):
        StoreLock(store, "label", wait_s=0.3).acquire()
    assert time.monotonic() - started >= 0.3


def test_the_lock_of_a_killed_job_is_taken_over_even_while_its_forked_child_lives(tmp_path, spawn):
    store = tmp_path / "labels.db"
    killed, _ = spawn(_hold_fork_and_die, store)
    killed.join(10)
    assert killed.exitcode == -signal.SIGKILL
    with StoreLock(store, "label") as lock:  # a record lock is the process's own: its children never had it
        assert lock.took_over is not None and lock.took_over.pid == killed.pid


def test_reading_the_holder_in_the_holding_process_keeps_the_lock(tmp_path):
    """Closing any descriptor of a file drops the process's record locks on it: reading must not open it."""
    store = tmp_path / "labels.db"
    with StoreLock(store, "label") as lock:
        assert read_holder(store) == lock.holder
        assert StoreLock.of(store, "label") is lock  # a second open in this process is the same lock
        context = multiprocessing.get_context("spawn")
        probe = context.Process(target=_try_lock, args=(store,))
        probe.start()
        probe.join(60)
        assert probe.exitcode == 3  # busy


def _try_lock(store):
    try:
        StoreLock(store, "label").acquire()
    except StoreBusy:
        os._exit(3)
    os._exit(0)


def _holder_elsewhere(store, heartbeat):
    """A lock file written by a holder on another host (a file system whose locks do not reach this one)."""
    data = {"pid": 1, "host": "elsewhere-" + socket.gethostname(), "kind": "label", "since": heartbeat,
            "heartbeat": heartbeat, "token": "x", "job": 3, "released": None}
    lock_path(store).write_text(json.dumps(data).ljust(1024))


def test_a_holder_on_another_host_holds_the_store_until_its_heartbeat_is_stale(tmp_path):
    store = tmp_path / "labels.db"
    _holder_elsewhere(store, time.time())
    with pytest.raises(StoreBusy, match=r"label job 3, pid 1 on elsewhere-"):
        StoreLock(store, "label").acquire()
    _holder_elsewhere(store, time.time() - STALE_AFTER_S - 1)
    with StoreLock(store, "label") as lock:
        assert lock.took_over.host.startswith("elsewhere-")


def test_a_negative_wait_is_refused():
    with pytest.raises(ValueError, match="--wait-for-store must be >= 0"):
        StoreLock("x.db", "label", wait_s=-1)
