"""Which files validate may take from the inspection cache: each file's version, and the cache's key."""

import os
import time
from pathlib import Path

from numtaflow.data import file_versions, literal_path, resolve_input, versioned_files
from numtaflow.inspection_cache import cache_key


def test_a_file_version_changes_when_the_file_is_rewritten_and_names_only_the_datasets_files(tmp_path):
    folder = tmp_path / "training-a"
    (folder / "sub").mkdir(parents=True)
    (folder / "a00000.png").write_bytes(b"one")
    (folder / "sub" / "a00001.png").write_bytes(b"two")
    (folder / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / "training-a.csv").write_text("filename,digit\na00000.png,0\n")
    dataset = resolve_input(str(folder), None)
    first = file_versions(dataset, versioned_files(dataset.root_uri, None)).set_index("image_id")
    assert sorted(first.index) == ["a00000.png", "sub/a00001.png"]  # not the CSV beside it, nor hidden files
    assert first.loc["sub/a00001.png", "object"] == str(folder / "sub" / "a00001.png")
    (folder / "sub" / "a00001.png").write_bytes(b"TWO")  # same size, new content: a new modification time
    os.utime(folder / "sub" / "a00001.png", ns=(1, 1))
    second = file_versions(dataset, versioned_files(dataset.root_uri, None)).set_index("image_id")
    assert second.loc["a00000.png", "version"] == first.loc["a00000.png", "version"]
    assert second.loc["sub/a00001.png", "version"] != first.loc["sub/a00001.png", "version"]


def test_a_rewrite_that_restores_the_modification_time_is_still_another_version(tmp_path):
    image = tmp_path / "0" / "scan.bmp"
    image.parent.mkdir()
    image.write_bytes(b"one")
    before, listed = os.stat(image), versioned_files(str(image), None)
    time.sleep(0.05)  # past the file system clock's tick (the change time is taken from it)
    image.write_bytes(b"two")  # the same size, as a fixed-size format rewritten
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -d`, `tar` or `rsync -t` leave it
    assert os.stat(image).st_mtime_ns == before.st_mtime_ns
    relisted = versioned_files(str(image), None)
    assert [size for _, size, _ in relisted] == [3] and relisted != listed


def test_file_names_with_glob_characters_are_read_literally():
    assert literal_path("a00001.png") == "a00001.png"
    assert literal_path("scan [1]/b{2}*?.png") == r"scan \[1\]/b\{2\}\*\?.png"


def test_the_pixel_limit_and_the_code_that_inspects_change_the_cache_key(tmp_path, monkeypatch):
    import shutil

    from numtaflow import inspection_cache

    original = cache_key(4096 * 4096)
    assert len(original) == 24 and cache_key(100) != original
    package = Path(inspection_cache.__file__).parent
    for changed in inspection_cache.CODE:
        for name in inspection_cache.CODE:
            shutil.copy(package / name, tmp_path / name)
        with monkeypatch.context() as patch:
            patch.setattr(inspection_cache.resources, "files", lambda _: tmp_path)
            assert cache_key(4096 * 4096) == original
            with open(tmp_path / changed, "a") as source:
                source.write("\n")
            assert cache_key(4096 * 4096) != original, changed
