"""Bad input fails the validate job with a readable report naming files and rules; nothing is committed."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from numtaflow.catalog import VALIDATED_IMAGES, VALIDATION_HTML, VALIDATION_REPORT
from numtaflow.contracts import JobExit
from tests.conftest import commit, layout, make_numtadb, read_parquet, run_job

pytestmark = pytest.mark.integration


def png(size=(28, 28), mode="L"):
    out = io.BytesIO()
    Image.new(mode, size, 255).save(out, format="PNG")
    return out.getvalue()


KINDS = [("L", "png"), ("RGB", "jpg"), ("RGBA", "png"), ("P", "png"), ("I;16", "png"), ("LA", "png"), ("P", "gif")]


def drawn(label: int, index: int, kind: int, size: tuple[int, int]) -> bytes:
    """A digit-like drawing, different for each (label, index), in colour mode and format ``KINDS[kind]``.

    RGBA draws black ink on transparent paper; the GIF has a second, black frame (the first is used).
    """
    mode, fmt = KINDS[kind]
    gray = Image.new("L", size, 255)
    draw = ImageDraw.Draw(gray)
    draw.text((size[0] // 3, size[1] // 4), str(label), fill=0)
    draw.line((2 + index, 2, size[0] - 3, size[1] - 3 - label), fill=40, width=2)
    if mode == "RGBA":
        image = Image.merge("RGBA", (*[Image.new("L", size, 0)] * 3, gray.point(lambda value: 255 - value)))
    else:
        image = gray.convert(mode)
    out = io.BytesIO()
    second_frame = {"save_all": True, "append_images": [Image.new("P", size, 0)]} if fmt == "gif" else {}
    image.save(out, format={"jpg": "JPEG"}.get(fmt, fmt.upper()), **second_frame)
    return out.getvalue()


@pytest.fixture(scope="module")
def broken_input(tmp_path_factory):
    # a user's own folder name: Spark must read it as written, neither percent-encoded nor as a glob
    folder = make_numtadb(tmp_path_factory.mktemp("my scans ছবি [1]") / "training-b", 3, source="training-a")
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(png()[:50])
    (folder / "notes.png").write_bytes(b"this is not an image")
    (folder / "orphan.png").write_bytes(png())
    (folder / "rgb_big.png").write_bytes(png((180, 180), "RGB"))  # other sizes/modes are fine
    lab = io.BytesIO()
    Image.new("LAB", (28, 28)).save(lab, format="TIFF")  # decodes, but featurize cannot make it grey
    (folder / "lab.tif").write_bytes(lab.getvalue())
    csv = folder.parent / "training-b.csv"
    rows = pd.read_csv(csv)
    one, two = (rows.loc[rows["digit"] == digit, "filename"].iloc[0] for digit in (1, 2))
    (folder / "relabelled.png").write_bytes((folder / one).read_bytes())  # same bytes, label 7: label noise
    (folder / "copy.png").write_bytes((folder / two).read_bytes())  # same bytes, same label: counted once
    (folder / "blank.png").write_bytes(png((60, 60), "RGB"))  # one colour, no ink: excluded, reported
    (folder / "dot.png").write_bytes(png((1, 1)))  # degenerate: excluded, reported
    csv.write_text(csv.read_text() + "zero.png,,,1,x\ntruncated.png,,,2,x\nnotes.png,,,3,x\nghost.png,,,4,x\n"
                   "rgb_big.png,,,x,x\nrgb_big.png,,,5,x\nlab.tif,,,6,x\nrelabelled.png,,,7,x\ncopy.png,,,2,x\n"
                   "blank.png,,,8,x\ndot.png,,,9,x\n")
    return {"folder": folder, "relabelled": one, "copied": two}


@pytest.fixture(scope="module")
def empty_input(tmp_path_factory):
    """A NumtaDB CSV with its header and no rows, beside an empty folder."""
    folder = tmp_path_factory.mktemp("empty") / "training-e"
    folder.mkdir()
    (folder.parent / "training-e.csv").write_text("filename,original filename,scanid,digit,database name\n")
    return folder


def test_broken_input_fails_with_named_files_and_rules(broken_input, empty_input, storage, s3_env, featurizer_env):
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": str(broken_input["folder"]),
           "NUMTAFLOW_EVAL_INPUT": str(empty_input), "NUMTAFLOW_PER_CLASS": "3", "NUMTAFLOW_EVAL_PER_CLASS": "1"}
    result = run_job("validate", "manual__broken", env)
    output = result.stdout + result.stderr
    assert result.returncode == JobExit.REFUSED
    relabelled = broken_input["relabelled"]
    for expected in (
        "every image decodes and goes through featurize's preparation",
        "zero.png: empty file (0 bytes)",
        "truncated.png: cannot decode",
        "notes.png: not an image",
        "lab.tif: cannot prepare: conversion from LAB to RGB not supported",
        "ghost.png: listed in the CSV but no such file",
        "orphan.png: file has no CSV row",
        "rgb_big.png: label 'x'",
        "rgb_big.png: appears 2 times",
        "[train] images with the same bytes (sha256) have the same label: 2 of ",
        f"{relabelled}: same bytes as relabelled.png (label '7')",
        f"relabelled.png: same bytes as {relabelled} (label '1')",
        f"[eval] the dataset is not empty: 0 rows in {empty_input}",
        "full report: s3://",
    ):
        assert expected in output, expected
    assert "rgb_big.png: cannot decode" not in output and "CANNOT_INFER_EMPTY_SCHEMA" not in output
    broken = layout("manual__broken")
    report = storage.get_json(broken.key(VALIDATION_REPORT))
    assert report["success"] is False
    train = {item["description"]: item for item in report["suites"][0]["expectations"]}
    copies = train["each image's bytes appear once (a copy with the same label is counted once, as its first name)"]
    assert (copies["success"], copies["warning"]) == (True, True)
    assert f"copy.png: same bytes as {broken_input['copied']}, counted once" in copies["examples"]
    excluded = next(item for name, item in train.items() if name.startswith("every image shows ink"))
    assert excluded["examples"] == ["blank.png: no ink: grey levels 76 to 76, fewer than 32 apart",  # all red
                                    "dot.png: too small: 1x1 < 8x8 pixels",
                                    "orphan.png: no ink: grey levels 255 to 255, fewer than 32 apart",
                                    "rgb_big.png: no ink: grey levels 76 to 76, fewer than 32 apart"]
    counts = report["suites"][0]["class_counts"]
    assert (counts["1"], counts["2"]) == (2, 3)  # label noise is not counted, a copy once
    assert "<td>0 rows in " in storage.get_bytes(broken.key(VALIDATION_HTML)).decode()
    assert not storage.exists(broken.marker_key("validate"))
    assert not any(o["Key"].startswith(broken.key(images)) for images in VALIDATED_IMAGES.values()
                   for o in storage.list_objects(broken.root))


def test_missing_columns_and_escaping_zip_are_reported(tmp_path, storage, s3_env, featurizer_env):
    folder = tmp_path / "training-d"
    folder.mkdir()
    (folder / "d1.png").write_bytes(png())
    (tmp_path / "training-d.csv").write_text("name,label\nd1.png,1\n")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("set/0/a.png", png())
        handle.writestr("../../escape.png", png())
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": str(folder), "NUMTAFLOW_EVAL_INPUT": str(archive)}
    result = run_job("validate", "manual__structure", env)
    output = result.stdout + result.stderr
    assert result.returncode == JobExit.REFUSED
    assert "CSV is missing column(s) filename, digit; found: name, label" in output
    assert "zip member '../../escape.png' escapes the archive's folder" in output
    assert not storage.exists(layout("manual__structure").marker_key("validate"))


def test_a_refused_validate_commits_no_inspections(tmp_path, empty_input, storage, s3_env, featurizer_env):
    """The training input passes and its inspections are written, but the evaluation input fails: the step
    is refused, so the part stays uncommitted and no later run reads it."""
    from numtaflow.catalog import COMMIT_MARKER, INSPECTION_CACHE_PREFIX

    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": str(make_numtadb(tmp_path / "training-a", 2)),
           "NUMTAFLOW_EVAL_INPUT": str(empty_input), "NUMTAFLOW_PER_CLASS": "2", "NUMTAFLOW_VALIDATION_CACHE": "true"}
    result = run_job("validate", "manual__half-valid", env)
    assert result.returncode == JobExit.REFUSED, (result.stdout + result.stderr)[-3000:]
    assert "kept the inspections of 20 newly read files" in result.stdout + result.stderr
    written = [o["Key"] for o in storage.list_objects(INSPECTION_CACHE_PREFIX) if "/manual__half-valid-train-" in o["Key"]]
    assert any(key.endswith(".parquet") for key in written)
    assert not any(key.endswith("/" + COMMIT_MARKER) for key in written)


def test_zip_of_class_folders_in_every_colour_mode_validates(tmp_path, storage, s3_env, featurizer_env):
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for digit in range(10):
            for index in range(2):
                kind = (2 * digit + index) % len(KINDS)  # each kind 2 or 3 times, in several sizes
                size = (24 + 7 * digit + 11 * index, 60 - 3 * digit)
                handle.writestr(f"my-digits/{digit}/{index}.{KINDS[kind][1]}", drawn(digit, index, kind, size))
    storage.put_bytes("uploads/digits.zip", archive.read_bytes())
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": f"s3://{storage.bucket}/uploads/digits.zip",
           "NUMTAFLOW_EVAL_INPUT": str(archive), "NUMTAFLOW_PER_CLASS": "2", "NUMTAFLOW_EVAL_PER_CLASS": "1"}
    result = run_job("validate", "manual__zip", env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = commit(storage, "manual__zip", "validate").summary
    assert summary.inputs["train"].layout == "class_folders"
    assert summary.class_counts["train"] == {str(d): 2 for d in range(10)}
    images = read_parquet(storage, "manual__zip", VALIDATED_IMAGES["train"])
    assert len(images) == 20 and images["content_sha256"].nunique() == 20
    assert set(images["mode"]) == {"L", "RGB", "RGBA", "P", "I;16", "LA"}
    assert len(set(zip(images["width"], images["height"]))) == 20
    assert sorted(images.loc[images["frames"] > 1, "image_id"]) == ["3/0.gif", "6/1.gif"]
    report = storage.get_json(layout("manual__zip").key(VALIDATION_REPORT))
    frames = next(item for item in report["suites"][0]["expectations"]
                  if item["description"].startswith("every image has one frame"))
    assert frames["examples"] == ["3/0.gif: 2 frames, the first is used", "6/1.gif: 2 frames, the first is used"]
