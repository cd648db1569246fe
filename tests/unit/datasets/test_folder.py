import io
import os

import pytest

from extractor.datasets.folder import file_sha256, hash_files, list_files, looks_like_image
from tests.images import random_image, write_jpegs


def test_finds_files_recursively_with_or_without_extension_and_skips_hidden(tmp_path):
    write_jpegs(tmp_path / "a" / "b", 2)
    (tmp_path / "noext").write_bytes((tmp_path / "a" / "b" / "img_000.jpg").read_bytes())
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(b"x")
    names = [f.relative_path for f in list_files(tmp_path)]
    assert names == ["a/b/img_000.jpg", "a/b/img_001.jpg", "noext"]


def test_a_symbolic_link_back_up_the_tree_is_walked_once(tmp_path):
    write_jpegs(tmp_path / "a", 1)
    (tmp_path / "a" / "up").symlink_to("..")
    (tmp_path / "elsewhere").symlink_to(tmp_path / "a")
    assert [f.relative_path for f in list_files(tmp_path)] == ["a/img_000.jpg"]


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


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM"])
def test_images_are_told_by_content_whatever_their_name(tmp_path, fmt):
    buffer = io.BytesIO()
    random_image(0, mode="L" if fmt == "PPM" else "RGB").save(buffer, fmt)
    (tmp_path / "IMG_0001").write_bytes(buffer.getvalue())
    (tmp_path / "photo.jfif").write_bytes(buffer.getvalue())
    assert all(looks_like_image(f) for f in list_files(tmp_path))


def test_image_names_claim_an_image_and_other_files_are_not_images(tmp_path):
    (tmp_path / "text.JPG").write_text("named like an image")  # an image that will fail to decode
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "README.md").write_text("# Faces\n")
    (tmp_path / "notes.txt").write_text("P5 is not a PGM: no width follows")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)))
    (tmp_path / "empty").write_bytes(b"")
    verdicts = {f.relative_path: looks_like_image(f) for f in list_files(tmp_path)}
    assert verdicts == {"README.md": False, "data.bin": False, "empty": False, "empty.png": True,
                        "notes.txt": False, "text.JPG": True}
