"""One listing for local and S3 inputs: a folder and its upload to the real S3 server read alike."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import digit_png, make_numtadb

pytestmark = pytest.mark.integration


def upload_tree(storage, root: Path, prefix: str) -> str:
    """Every file below ``root`` (hidden ones too) under ``prefix``; returns the prefix's URI."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        storage.put_bytes(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return f"s3://{storage.bucket}/{prefix}"


def numtadb_tree(root: Path) -> str:
    """A NumtaDB folder with its CSV beside it, plus hidden files; returns the folder's relative path."""
    folder = make_numtadb(root / "training-x", 2)
    (folder / ".DS_Store").write_bytes(b"finder")
    (folder / "_SUCCESS").write_bytes(b"")
    return "training-x"


def class_folder_tree(root: Path) -> str:
    """Images in a folder per class, one nested deeper, plus hidden files and folders."""
    for relative in ("digits/0/a.png", "digits/0/more/b.png", "digits/1/c.png", "digits/1/.cache/d.png",
                     "digits/.git/f.png", "digits/_notes.txt"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(digit_png(len(relative)))
    return "digits"


@pytest.mark.parametrize("make_tree", [numtadb_tree, class_folder_tree])
def test_a_local_folder_and_its_upload_list_and_resolve_alike(tmp_path, storage, make_tree):
    from numtaflow.data import build_manifest, list_input, manifest_hash, resolve_input

    name = make_tree(tmp_path)
    s3_root = upload_tree(storage, tmp_path, f"listing/{make_tree.__name__}")
    local_uri, s3_uri = str(tmp_path / name), f"{s3_root}/{name}"

    listed = list_input(local_uri, None)
    assert listed[0] and list_input(s3_uri, storage) == listed == (listed[0], [])
    listed = listed[0]
    assert all(not part.startswith((".", "_")) for f in listed for part in f.relative_path.split("/"))
    local, remote = resolve_input(local_uri, None), resolve_input(s3_uri, storage)
    assert (remote.layout, remote.files) == (local.layout, local.files)
    assert (remote.csv_uri is None) == (local.csv_uri is None)
    if local.csv_frame is not None:
        assert remote.csv_frame.equals(local.csv_frame)
    assert manifest_hash(build_manifest(remote)) == manifest_hash(build_manifest(local))


@pytest.mark.parametrize("make_tree", [numtadb_tree, class_folder_tree])
def test_an_image_spark_would_skip_refuses_the_training_input_by_name(tmp_path, storage, make_tree):
    """Spark's file reader skips names starting with '_': such an image is named, not left out of training."""
    from numtaflow.data import InputError, resolve_input

    name = make_tree(tmp_path)
    hidden = "_drafts/7.png" if make_tree is numtadb_tree else "1/_c2.png"
    (tmp_path / name / hidden).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name / hidden).write_bytes(digit_png(7))
    s3_root = upload_tree(storage, tmp_path, f"listing/hidden-{make_tree.__name__}")
    for uri, store in ((str(tmp_path / name), None), (f"{s3_root}/{name}", storage)):
        with pytest.raises(InputError, match=rf"^{hidden}: hidden from Spark: a name in its path starts with '_'"):
            resolve_input(uri, store)


def test_reads_existence_and_missing_folders_agree(tmp_path, storage):
    from numtaflow.data import InputError, exists, list_input, read_bytes

    name = numtadb_tree(tmp_path)
    s3_root = upload_tree(storage, tmp_path, "listing/reads")
    for root, store in ((str(tmp_path), None), (s3_root, storage)):
        assert read_bytes(f"{root}/{name}.csv", store) == (tmp_path / f"{name}.csv").read_bytes()
        assert exists(f"{root}/{name}.csv", store)
        assert not exists(f"{root}/{name}", store) and not exists(f"{root}/nope.csv", store)
        with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
            read_bytes(f"{root}/nope.csv", store)
        for missing in (f"{root}/nope", f"{root}/{name}.csv"):
            with pytest.raises(InputError, match="does not exist or is not a folder"):
                list_input(missing, store)


def test_a_zip_resolves_to_the_same_extraction_from_disk_or_s3(tmp_path, storage):
    from numtaflow.data import resolve_input

    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for digit in range(3):
            handle.writestr(f"set/{digit}/{digit}.png", digit_png(digit))
    storage.put_bytes("listing/zips/digits.zip", archive.read_bytes())
    local = resolve_input(str(archive), storage)
    assert resolve_input(f"s3://{storage.bucket}/listing/zips/digits.zip", storage) == local
    assert [f.relative_path for f in local.files] == ["0/0.png", "1/1.png", "2/2.png"]


def test_a_staged_zip_is_reused_only_while_complete_and_concurrent_stagings_never_mix(tmp_path, storage):
    """A zip staged once is reused; one whose staged copy lost a file is extracted again; two runs
    staging the same zip at once each get a complete folder, and the same one."""
    from concurrent.futures import ThreadPoolExecutor

    from numtaflow.data import stage_zip

    archive = tmp_path / "scans.zip"
    names = [f"scans/{digit}/{n}.png" for digit in range(3) for n in range(20)]
    with zipfile.ZipFile(archive, "w") as handle:
        for n, name in enumerate(names):
            handle.writestr(name, digit_png(n))
    prefix = f"staging-{tmp_path.name}/"

    def staged_files(uri: str) -> list[str]:
        folder = uri.split("/", 3)[3] + "/"
        return sorted(o["Key"][len(folder):] for o in storage.list_objects(folder))

    expected = sorted(name.removeprefix("scans/") for name in names)
    with ThreadPoolExecutor(2) as pool:
        first, second = (staged.uri for staged in pool.map(lambda _: stage_zip(str(archive), storage, prefix),
                                                           range(2)))
    assert first == second and staged_files(first) == expected
    assert len({o["Key"].split("/")[2] for o in storage.list_objects(prefix) if o["Key"].count("/") > 2}) == 1
    assert stage_zip(str(archive), storage, prefix).uri == first  # reused
    storage.client.delete_object(Bucket=storage.bucket, Key=f"{first.split('/', 3)[3]}/1/5.png")
    repaired = stage_zip(str(archive), storage, prefix).uri
    assert repaired != first and staged_files(repaired) == expected


def test_a_zip_member_that_cannot_be_extracted_is_listed_for_scoring_and_refuses_the_zip_for_training(
        tmp_path, storage):
    """Scoring leaves the member out, naming it and why; an input that needs every member (training)
    is refused naming it, also when it reuses the extraction a scoring run made."""
    from numtaflow.data import InputError, stage_zip

    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for n in range(3):
            handle.writestr(f"scans/{n}.png", digit_png(n))
    content = bytearray(archive.read_bytes())
    content[content.rindex(b"PK\x01\x02") + 8] |= 0x1  # 2.png flagged as encrypted
    archive.write_bytes(bytes(content))
    prefix = f"staging-{tmp_path.name}/"
    staged = stage_zip(str(archive), storage, prefix, skip_unreadable=True)
    assert (staged.top, staged.unreadable) == ("scans/", (("2.png", "encrypted in its archive: it needs a password"),))
    folder = staged.uri.split("/", 3)[3] + "/"
    assert sorted(o["Key"][len(folder):] for o in storage.list_objects(folder)) == ["0.png", "1.png"]
    with pytest.raises(InputError, match=f"zip {archive}: scans/2.png cannot be extracted: encrypted"):
        stage_zip(str(archive), storage, prefix)  # the same extraction, reused


def test_refused_credentials_never_appear_in_the_error(storage, s3_env, monkeypatch):
    from numtaflow.data import list_input
    from numtaflow.storage import Storage

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    refused = Storage(storage.settings)  # a Storage reads the keys in the environment once: its client when made,
    # its file system on first use
    with pytest.raises(OSError) as error:
        list_input(f"s3://{storage.bucket}/listing", refused)
    for secret in ("wrong-secret-value", s3_env["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in str(error.value)


def test_a_batch_from_an_s3_input_is_copied_server_side(tmp_path, storage, monkeypatch):
    from numtaflow.incoming import drop_batch
    from numtaflow.storage import Storage

    name = numtadb_tree(tmp_path)
    source = f"{upload_tree(storage, tmp_path, 'listing/batch-source')}/{name}"
    copies = []

    def copy(*args, **kwargs):
        copies.append(args)
        return Storage.copy(storage, *args, **kwargs)

    monkeypatch.setattr(storage, "copy", copy)
    _, count = drop_batch(storage, source, f"s3://{storage.bucket}/listing-incoming", "2026-11-02", "b", 1)
    assert count == len(copies) == 10
    for _, source_key, key in copies:
        assert storage.get_bytes(key) == (tmp_path / name / source_key.rsplit("/", 1)[-1]).read_bytes()
    assert storage.exists("listing-incoming/dt=2026-11-02/b/_BATCH.json")
