"""Which files validate may take from the inspection cache: each file's version, and the cache's key."""

import os

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


def test_file_names_with_glob_characters_are_read_literally():
    assert literal_path("a00001.png") == "a00001.png"
    assert literal_path("scan [1]/b{2}*?.png") == r"scan \[1\]/b\{2\}\*\?.png"


def test_the_pixel_limit_and_nothing_else_of_the_settings_changes_the_cache_key():
    assert cache_key(4096 * 4096) == cache_key(4096 * 4096) and len(cache_key(100)) == 24
    assert cache_key(100) != cache_key(4096 * 4096)
