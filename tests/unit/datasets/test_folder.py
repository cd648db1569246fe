import os

from extractor.datasets.folder import file_sha256, hash_files, list_files
from tests.images import write_jpegs


def test_finds_files_recursively_with_or_without_extension_and_skips_hidden(tmp_path):
    write_jpegs(tmp_path / "a" / "b", 2)
    (tmp_path / "noext").write_bytes((tmp_path / "a" / "b" / "img_000.jpg").read_bytes())
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(b"x")
    names = [f.relative_path for f in list_files(tmp_path)]
    assert names == ["a/b/img_000.jpg", "a/b/img_001.jpg", "noext"]


def test_digest_is_of_content_and_reused_only_while_size_and_mtime_hold(tmp_path):
    paths = write_jpegs(tmp_path, 2)
    files = hash_files(list_files(tmp_path), {})
    assert [f.digest for f in files] == [file_sha256(p) for p in paths]
    known = {f.relative_path: (f.size, f.mtime_ns, "stale-but-trusted") for f in files}
    assert {f.digest for f in hash_files(list_files(tmp_path), known)} == {"stale-but-trusted"}
    paths[0].write_bytes(paths[1].read_bytes())
    os.utime(paths[0], ns=(1, 1))
    rehashed = hash_files(list_files(tmp_path), known)
    assert rehashed[0].digest == file_sha256(paths[1]) and rehashed[1].digest == "stale-but-trusted"
