"""Bad input fails the validate job with a readable report naming files and rules; nothing is committed."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from numtaflow.catalog import VALIDATED_IMAGES, VALIDATION_REPORT
from tests.conftest import commit, layout, make_numtadb, run_job

pytestmark = pytest.mark.integration


def png(size=(28, 28), mode="L"):
    out = io.BytesIO()
    Image.new(mode, size, 255).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def broken_input(tmp_path_factory):
    folder = make_numtadb(tmp_path_factory.mktemp("bad") / "training-b", 3, source="training-a")
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(png()[:50])
    (folder / "notes.png").write_bytes(b"this is not an image")
    (folder / "orphan.png").write_bytes(png())
    (folder / "rgb_big.png").write_bytes(png((180, 180), "RGB"))  # other sizes/modes are fine
    csv = folder.parent / "training-b.csv"
    csv.write_text(csv.read_text() + "zero.png,,,1,x\ntruncated.png,,,2,x\nnotes.png,,,3,x\nghost.png,,,4,x\n"
                   "rgb_big.png,,,x,x\nrgb_big.png,,,5,x\n")
    return folder


def test_broken_input_fails_with_named_files_and_rules(broken_input, storage, s3_env, featurizer_env):
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": str(broken_input), "NUMTAFLOW_EVAL_INPUT": str(broken_input),
           "NUMTAFLOW_PER_CLASS": "3", "NUMTAFLOW_EVAL_PER_CLASS": "1"}
    result = run_job("validate", "manual__broken", env)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    for expected in (
        "every image decodes",
        "zero.png: empty file (0 bytes)",
        "truncated.png: cannot decode",
        "notes.png: not an image",
        "ghost.png: listed in the CSV but no such file",
        "orphan.png: file has no CSV row",
        "rgb_big.png: label 'x'",
        "rgb_big.png: appears 2 times",
        "full report: s3://",
    ):
        assert expected in output, expected
    assert "rgb_big.png: cannot decode" not in output
    broken = layout("manual__broken")
    report = storage.get_json(broken.key(VALIDATION_REPORT))
    assert report["success"] is False
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
    assert result.returncode == 1
    assert "CSV is missing column(s) filename, digit; found: name, label" in output
    assert "zip member '../../escape.png' escapes the archive's folder" in output
    assert not storage.exists(layout("manual__structure").marker_key("validate"))


def test_zip_of_class_folders_validates(tmp_path, storage, s3_env, featurizer_env):
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for digit in range(10):
            for index in range(2):
                handle.writestr(f"my-digits/{digit}/{index}.jpg", png((40 + index * 20, 30), "RGB"))
    storage.put_bytes("uploads/digits.zip", archive.read_bytes())
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": f"s3://{storage.bucket}/uploads/digits.zip",
           "NUMTAFLOW_EVAL_INPUT": str(archive), "NUMTAFLOW_PER_CLASS": "2", "NUMTAFLOW_EVAL_PER_CLASS": "1"}
    result = run_job("validate", "manual__zip", env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = commit(storage, "manual__zip", "validate").summary
    assert summary.inputs["train"].layout == "class_folders"
    assert summary.class_counts["train"] == {str(d): 2 for d in range(10)}
