"""The store protects itself, as a user meets it: outputs never overwrite it, a foreign file is left alone, a
damaged store is said to be damaged, a read-only store can still be read, and a backup is consistent.

Every command runs the installed `extractor` console script on real files.
"""
import hashlib
import shutil
import sqlite3
import subprocess

import pandas as pd
import pytest

from tests.e2e.cli import console_script, installed, installed_json
from tests.images import write_jpegs
from tests.models import linear_classifier

pytestmark = pytest.mark.timeout(300)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def labeled(tmp_path):
    """A folder of 60 images labeled by a tiny ONNX teacher into labels.db."""
    write_jpegs(tmp_path / "images", 60)
    linear_classifier(tmp_path / "teacher.onnx")
    installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--workers", 0,
              "--quiet", cwd=tmp_path)
    return tmp_path


def label(cwd, *args, check=True):
    return installed("label", "--teacher", "teacher.onnx", "--images", "images", "--workers", 0, "--quiet", *args,
                     cwd=cwd, check=check)


def test_export_never_overwrites_the_store_or_its_wal(labeled):
    (labeled / "alias.db").symlink_to(labeled / "labels.db")
    before = installed_json("store", "stats", "--store", "labels.db", cwd=labeled)["labels"]
    for out in ("labels.db", "labels.db-wal", "labels.db-shm", "./labels.db", "alias.db"):
        result = installed("export", "--store", "labels.db", "--out", out, "--format", "csv", cwd=labeled, check=False)
        assert result.returncode == 1 and "would destroy the stored answers" in result.stderr, (out, result.stderr)
        assert result.stderr.count("\n") == 1 and "exported" not in result.stdout
    assert installed_json("store", "stats", "--store", "labels.db", cwd=labeled)["labels"] == before == 60
    backup = installed("store", "backup", "--store", "labels.db", "--out", "labels.db-wal", cwd=labeled, check=False)
    assert backup.returncode == 1 and "part of the store" in backup.stderr


def test_a_foreign_sqlite_file_is_named_and_never_changed(tmp_path):
    write_jpegs(tmp_path / "images", 4)
    linear_classifier(tmp_path / "teacher.onnx")
    crm = tmp_path / "crm.db"
    with sqlite3.connect(crm) as db:
        db.executescript("CREATE TABLE customers (id INTEGER, name TEXT); INSERT INTO customers VALUES (1, 'Ada');")
    db.close()
    before = digest(crm)
    commands = [("store", "stats"), ("store", "check"), ("export", "--out", "x.parquet"),
                ("store", "backup", "--out", "copy.db"),
                ("label", "--teacher", "teacher.onnx", "--images", "images", "--quiet"),
                ("label", "--teacher", "teacher.onnx", "--images", "images", "--dry-run")]
    for command in commands:
        result = installed(*command, "--store", "crm.db", cwd=tmp_path, check=False)
        assert result.returncode == 1, command
        assert "it is a SQLite database of another program (tables: customers)" in result.stdout + result.stderr
        assert "internal error" not in result.stderr
    assert digest(crm) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db", "images", "teacher.onnx"]  # no -wal, no lock


def test_a_damaged_store_is_never_called_healthy_and_every_command_says_so_in_one_line(labeled):
    store = labeled / "labels.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = store.stat().st_size
    with open(store, "r+b") as file:  # 8 KiB of noise in the middle of the file
        file.seek(size // 2)
        file.write(bytes(range(256)) * 32)
    stats = installed("store", "stats", "--store", "labels.db", cwd=labeled, check=False)
    assert stats.returncode == 1 and "is NOT healthy" in stats.stdout and "passed" not in stats.stdout
    assert ".recover" in stats.stdout
    check = installed("store", "check", "--store", "labels.db", "--json", cwd=labeled, check=False)
    assert check.returncode == 1 and '"damaged": true' in check.stdout
    export = installed("export", "--store", "labels.db", "--out", "x.csv", "--format", "csv", cwd=labeled, check=False)
    assert export.returncode == 1 and export.stderr.startswith("error: the label store cannot be read")
    assert export.stderr.count("\n") == 1 and not (labeled / "x.csv").exists()
    rerun = label(labeled, "--store", "labels.db", check=False)  # it reads only the keys it needs: may not meet it
    assert "internal error" not in rerun.stderr and (rerun.returncode == 0 or rerun.stderr.count("\n") == 1)


def _unshare_works():
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind -o ro / / 2>/dev/null || mount -t tmpfs x "
                            "/mnt"], capture_output=True)
    return probe.returncode == 0


def read_only(cwd, folder, *command):
    """Runs the installed command with ``folder`` mounted read-only over itself (a private mount namespace)."""
    script = f"mount --bind -o ro '{folder}' '{folder}' && exec \"$@\""
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", console_script(), *map(str, command)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` to mount a folder read-only")
def test_a_store_on_a_read_only_mount_can_be_read(labeled):
    shelf = labeled / "shelf"
    shelf.mkdir()
    shutil.copy(labeled / "labels.db", shelf / "labels.db")  # closed cleanly: no -wal, as a published store is
    stats = read_only(labeled, shelf, "store", "stats", "--store", "shelf/labels.db", "--json")
    assert stats.returncode == 0, stats.stderr
    assert '"labels": 60' in stats.stdout and '"healthy": true' in stats.stdout
    export = read_only(labeled, shelf, "export", "--store", "shelf/labels.db", "--out", "out.parquet")
    assert export.returncode == 0, export.stderr
    assert len(pd.read_parquet(labeled / "out.parquet")) == 60
    dry = read_only(labeled, shelf, "label", "--teacher", "teacher.onnx", "--images", "images", "--store",
                    "shelf/labels.db", "--dry-run")
    assert dry.returncode == 0 and "60 already cached" in dry.stdout, dry.stderr
    backup = read_only(labeled, shelf, "store", "backup", "--store", "shelf/labels.db", "--out", "copy.db")
    assert backup.returncode == 0 and (labeled / "copy.db").exists(), backup.stderr
    write = read_only(labeled, shelf, "label", "--teacher", "teacher.onnx", "--images", "images", "--store",
                      "shelf/labels.db", "--retry-failed")
    assert write.returncode == 1 and "is read-only" in write.stderr and write.stderr.count("\n") == 1
    assert sorted(p.name for p in shelf.iterdir()) == ["labels.db"]


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` to mount a folder read-only")
def test_train_reads_a_store_on_a_read_only_mount(labeled):
    shelf = labeled / "shelf"
    shelf.mkdir()
    shutil.copy(labeled / "labels.db", shelf / "labels.db")
    train = read_only(labeled, shelf, "train", "--store", "shelf/labels.db", "--out", "run", "--student", "resnet8",
                      "--epochs", 1, "--augment", "none", "--probe-images", 0, "--workers", 0, "--quiet")
    assert train.returncode == 0, train.stderr


def test_a_backup_taken_while_a_job_runs_is_whole(labeled):
    installed("store", "backup", "--store", "labels.db", "--out", "copy.db", cwd=labeled)
    assert installed_json("store", "check", "--store", "copy.db", cwd=labeled)["healthy"]
    copy = installed_json("store", "stats", "--store", "copy.db", cwd=labeled)
    assert copy["labels"] == 60 and len(copy["jobs"]) == 1
    again = installed("store", "backup", "--store", "labels.db", "--out", "copy.db", cwd=labeled, check=False)
    assert again.returncode == 1 and "never overwrites" in again.stderr


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` to mount a small tmpfs")
def test_a_full_disk_stops_the_job_in_one_line_and_a_rerun_with_space_finishes_it(tmp_path):
    write_jpegs(tmp_path / "images", 600)
    linear_classifier(tmp_path / "teacher.onnx", size=16)
    (tmp_path / "shelf").mkdir()
    label = (f"'{console_script()}' label --teacher teacher.onnx --images images --store shelf/labels.db "
             "--mean 127.5 --std 127.5 --batch-size 16 --quiet")
    script = "\n".join([  # one private mount namespace: the tmpfs lives as long as the script
        "mount -t tmpfs -o size=400k full shelf || exit 99",
        f"{label} > full.out 2> full.err; echo $? > full.rc",
        f"'{console_script()}' store check --store shelf/labels.db --json > check.out 2> check.err",
        "mount -o remount,size=64m shelf",
        f"{label} --json > again.out 2> again.err; echo $? > again.rc",
        "cp shelf/labels.db kept.db",
    ])
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, timeout=300, check=True)
    full_error = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.rc").read_text().strip() == "1"
    assert full_error.count("\n") == 1 and "disk that holds the label store is full" in full_error, full_error
    assert '"healthy": true' in (tmp_path / "check.out").read_text()
    assert (tmp_path / "again.rc").read_text().strip() == "0", (tmp_path / "again.err").read_text()
    with sqlite3.connect(tmp_path / "kept.db") as db:
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (600,)
