import io
import zipfile

import pandas as pd
import pytest

from numtaflow.data import (
    InputError,
    ListedFile,
    detect_layout,
    is_csv,
    is_image_name,
    is_zip,
    manifest_from_class_folders,
    manifest_from_csv,
    manifest_hash,
    resolve_input,
    safe_zip_members,
    stage_zip,
    strip_common_folder,
)


def test_file_kinds_are_told_by_suffix_in_any_case():
    assert is_image_name("training-a/A00012.PNG") and is_image_name("x.jpeg") and is_image_name("s3://b/k/y.webp")
    assert not is_image_name("training-a.csv") and not is_image_name("png") and not is_image_name("a.png.txt")
    assert is_zip("s3://bucket/NumtaDB.ZIP") and is_zip("/tmp/mine.zip")
    assert not is_zip("/tmp/mine.zip/a.png") and not is_zip("/tmp/zip")
    assert is_csv("training-a.CSV") and not is_csv("csv/a.png")


def csv_frame(rows):
    return pd.DataFrame(rows, columns=["filename", "digit"], dtype=str)


def test_manifest_flags_rows_without_files_and_files_without_rows():
    frame = csv_frame([("a.png", "1"), ("b.png", "2"), ("missing.png", "3")])
    files = [ListedFile("a.png", 10), ListedFile("b.png", 11), ListedFile("extra.png", 12), ListedFile("x.csv", 5)]
    manifest = manifest_from_csv(frame, files, "s3://bucket/training-a").set_index("image_id")
    assert list(manifest.index) == ["a.png", "b.png", "extra.png", "missing.png"]
    assert manifest.loc["missing.png", "has_file"] == False  # noqa: E712
    assert manifest.loc["missing.png", "in_csv"] == True  # noqa: E712
    assert manifest.loc["extra.png", "in_csv"] == False  # noqa: E712
    assert pd.isna(manifest.loc["extra.png", "label_raw"])
    assert manifest.loc["a.png", "uri"] == "s3://bucket/training-a/a.png"
    assert manifest.loc["b.png", "size"] == 11


def test_manifest_keeps_duplicate_csv_rows_for_validation_to_report():
    manifest = manifest_from_csv(csv_frame([("a.png", "1"), ("a.png", "7")]), [ListedFile("a.png", 3)], "/d")
    assert (manifest["image_id"] == "a.png").sum() == 2


def test_missing_columns_are_named():
    frame = pd.DataFrame({"file": ["a.png"], "digit": ["1"]})
    with pytest.raises(InputError, match="missing column\\(s\\) filename; found: file, digit"):
        manifest_from_csv(frame, [], "/d")


def test_class_folders_take_the_folder_as_label():
    files = [ListedFile("3/x.png", 1), ListedFile("7/y.jpg", 2), ListedFile("loose.png", 3)]
    manifest = manifest_from_class_folders(files, "/root").set_index("image_id")
    assert manifest.loc["3/x.png", "label_raw"] == "3"
    assert manifest.loc["7/y.jpg", "label_raw"] == "7"
    assert pd.isna(manifest.loc["loose.png", "label_raw"])


def test_detect_layout():
    assert detect_layout([ListedFile("a.png", 1)], has_csv=True) == "numtadb"
    assert detect_layout([ListedFile("0/a.png", 1)], has_csv=False) == "class_folders"
    with pytest.raises(InputError, match="no labels found"):
        detect_layout([ListedFile("a.png", 1)], has_csv=False)


def test_manifest_hash_ignores_row_order_but_not_labels():
    files = [ListedFile("a.png", 1), ListedFile("b.png", 2)]
    first = manifest_from_csv(csv_frame([("a.png", "1"), ("b.png", "2")]), files, "/d")
    second = manifest_from_csv(csv_frame([("b.png", "2"), ("a.png", "1")]), files, "/d")
    relabelled = manifest_from_csv(csv_frame([("a.png", "1"), ("b.png", "3")]), files, "/d")
    assert manifest_hash(first) == manifest_hash(second)
    assert manifest_hash(first) != manifest_hash(relabelled)


def make_zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    buffer.seek(0)
    return zipfile.ZipFile(buffer)


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/passwd", "C:/x.png"])
def test_zip_members_escaping_the_folder_are_refused(name):
    with pytest.raises(InputError, match="escapes the archive's folder"):
        safe_zip_members(make_zip([("ok/a.png", b"x"), (name, b"x")]), 1 << 20)


def test_zip_symlinks_and_bombs_are_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("data/link")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        safe_zip_members(zipfile.ZipFile(io.BytesIO(buffer.getvalue())), 1 << 20)
    with pytest.raises(InputError, match="expands to more than 100 bytes"):
        safe_zip_members(make_zip([("a.png", b"0" * 101)]), 100)


def test_zip_members_skip_metadata_and_find_common_folder():
    members = safe_zip_members(make_zip([("set/a.png", b"1"), ("__MACOSX/set/._a.png", b"1"), ("set/.DS_Store", b"")]),
                               1 << 20)
    assert [m.filename for m in members] == ["set/a.png"]
    assert strip_common_folder(["set/a.png", "set/b.png"]) == "set/"
    assert strip_common_folder(["set/a.png", "other/b.png"]) == ""
    assert strip_common_folder(["a.png"]) == ""


def test_resolve_local_numtadb_folder(tmp_path):
    folder = tmp_path / "training-x"
    folder.mkdir()
    (folder / "x1.png").write_bytes(b"1")
    (tmp_path / "training-x.csv").write_text("filename,digit\nx1.png,4\n")
    dataset = resolve_input(str(folder), None)
    assert dataset.layout == "numtadb"
    assert dataset.csv_uri == str(tmp_path / "training-x.csv")
    assert [f.relative_path for f in dataset.files] == ["x1.png"]


def test_resolve_a_download_holding_one_numtadb_folder_and_its_csv(tmp_path):
    """Kaggle's layout one level up (training-a/ with training-a.csv beside it), as a folder or a zip
    of one: the CSV's names are relative to the folder it is named after."""
    (tmp_path / "training-x").mkdir()
    (tmp_path / "training-x" / "x1.png").write_bytes(b"1")
    (tmp_path / "training-x.csv").write_text("filename,digit\nx1.png,4\n")
    dataset = resolve_input(str(tmp_path), None)
    assert (dataset.layout, dataset.root_uri) == ("numtadb", str(tmp_path / "training-x"))
    assert dataset.csv_uri == str(tmp_path / "training-x.csv")
    assert manifest_from_csv(dataset.csv_frame, dataset.files, dataset.root_uri)[["image_id", "in_csv", "has_file"]
                                                                                 ].values.tolist() == [["x1.png", True, True]]
    (tmp_path / "training-x.csv").write_text("filename,digit\ntraining-x/x1.png,4\n")  # names from one level up
    dataset = resolve_input(str(tmp_path), None)
    assert (dataset.root_uri, [f.relative_path for f in dataset.files]) == (str(tmp_path), ["training-x.csv",
                                                                                         "training-x/x1.png"])


def test_resolve_reports_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_input(str(tmp_path / "nope"), None)


def test_list_input_walks_subfolders_with_sizes_and_names_the_images_spark_skips(tmp_path, monkeypatch):
    from numtaflow.data import list_input

    for relative, size in (("3/a.png", 3), ("3/deep/b.png", 5), ("7/c.jpg", 1), ("3/.DS_Store", 2),
                           (".git/x.png", 4), ("_tmp/y.png", 4), ("7/_part.png", 4)):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x" * size)
    expected = ([ListedFile("3/a.png", 3), ListedFile("3/deep/b.png", 5), ListedFile("7/c.jpg", 1)],
                ["7/_part.png", "_tmp/y.png"])
    assert list_input(str(tmp_path), None) == expected
    assert list_input(f"file://{tmp_path}/", None) == expected
    monkeypatch.chdir(tmp_path.parent)
    assert list_input(tmp_path.name, None) == expected


def test_list_input_refuses_a_file_as_the_input_folder(tmp_path):
    from numtaflow.data import list_input

    (tmp_path / "a.png").write_bytes(b"1")
    with pytest.raises(InputError, match="does not exist or is not a folder"):
        list_input(str(tmp_path / "a.png"), None)


def test_a_training_input_with_images_spark_would_skip_is_refused_by_name(tmp_path):
    for relative in ("3/a.png", "3/_b.png", "_old/7/c.png", "3/._a.png", "__MACOSX/3/._a.png"):
        (tmp_path / "digits" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "digits" / relative).write_bytes(b"1")
    with pytest.raises(InputError, match=r"^3/_b.png \(and 1 more\): hidden from Spark: a name in its path starts "
                                         r"with '_', so Spark would leave it out without a word; rename it"):
        resolve_input(str(tmp_path / "digits"), None)
    (tmp_path / "digits" / "3" / "_b.png").rename(tmp_path / "digits" / "3" / "b.png")
    (tmp_path / "digits" / "_old").rename(tmp_path / "digits" / ".old")  # a system-hidden name: not reported
    assert [f.relative_path for f in resolve_input(str(tmp_path / "digits"), None).files] == ["3/a.png", "3/b.png"]


def test_a_csv_row_naming_an_image_spark_would_skip_is_refused_and_other_folders_are_not_read(tmp_path):
    (tmp_path / "training-x").mkdir()
    (tmp_path / "training-x" / "x1.png").write_bytes(b"1")
    (tmp_path / "other" / "_y.png").parent.mkdir()
    (tmp_path / "other" / "_y.png").write_bytes(b"1")  # beside the NumtaDB folder, not part of it
    (tmp_path / "training-x.csv").write_text("filename,digit\nx1.png,4\n")
    assert [f.relative_path for f in resolve_input(str(tmp_path), None).files] == ["x1.png"]
    (tmp_path / "training-x" / "_x2.png").write_bytes(b"1")
    (tmp_path / "training-x.csv").write_text("filename,digit\nx1.png,4\n_x2.png,5\n")
    with pytest.raises(InputError, match=r"^training-x/_x2.png: hidden from Spark"):
        resolve_input(str(tmp_path), None)


def test_read_bytes_and_exists_on_local_files(tmp_path):
    from numtaflow.data import exists, read_bytes

    (tmp_path / "labels.csv.gz").write_bytes(b"not gzip")  # read as stored, never decompressed
    assert read_bytes(str(tmp_path / "labels.csv.gz"), None) == b"not gzip"
    assert exists(str(tmp_path / "labels.csv.gz"), None) and not exists(str(tmp_path), None)
    assert not exists(str(tmp_path / "nope.csv"), None)
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        read_bytes(str(tmp_path / "nope.csv"), None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_bytes(str(tmp_path), None)


def test_s3_inputs_need_storage_settings():
    from numtaflow.data import list_input

    with pytest.raises(InputError, match="needs S3 settings"):
        list_input("s3://bucket/training-a", None)


def test_a_zip_with_a_member_it_cannot_give_is_refused_before_anything_is_staged(tmp_path):
    class Bucket:
        bucket = "b"

        def __init__(self):
            self.objects = {}

        def read_with_etag(self, key):
            return (None, None)

        def delete_prefix(self, prefix):
            self.objects = {key: body for key, body in self.objects.items() if not key.startswith(prefix)}

        def put_bytes(self, key, body, *args, **kwargs):
            self.objects[key] = body

    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr("scans/a.png", b"first")
        out.writestr("scans/b.png", b"second")
    content = bytearray(archive.read_bytes())
    content[content.rindex(b"PK\x01\x02") + 8] |= 0x1  # b.png flagged as encrypted in the central directory
    archive.write_bytes(bytes(content))
    bucket = Bucket()
    with pytest.raises(InputError, match=f"zip {archive}: scans/b.png cannot be extracted: encrypted in its archive"):
        stage_zip(str(archive), bucket, "staging/")
    assert bucket.objects == {}  # not a.png either: nothing of a failed extraction is left


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_damaged_member_is_named_whatever_its_compression(tmp_path, method):
    import random

    from numtaflow.data import read_member

    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w", compression=method) as out:
        out.writestr("a.png", random.Random(1).randbytes(4000))
    content = bytearray(archive.read_bytes())
    for offset in range(60, 200):  # the compressed stream, after the local header
        content[offset] ^= 0x5A
    archive.write_bytes(bytes(content))
    with zipfile.ZipFile(archive) as damaged, pytest.raises(OSError, match="in its archive"):
        read_member(damaged, damaged.infolist()[0])


def test_an_archive_zipfile_cannot_open_is_an_input_error_naming_why(tmp_path):
    from numtaflow.data import zip_archive

    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a.png", b"1")
    content = bytearray(archive.read_bytes())
    content[content.rindex(b"PK\x01\x02") + 6] = 95  # "version needed to extract": 9.5, which Python lacks
    archive.write_bytes(bytes(content))
    with pytest.raises(InputError, match=r"not a readable zip archive \(zip file version 9.5\)"):
        zip_archive(str(archive))
