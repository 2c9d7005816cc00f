import io
import zipfile

import pytest
from PIL import Image

from numtaflow.scoring import describe, image_files, prediction_lines, scorable, top_digits, withheld_label_accuracy
from tests.conftest import digit_png


def test_top_digits_rank_by_probability_then_digit():
    probabilities = [0.05, 0.6, 0.05, 0.2, 0, 0, 0, 0, 0.1, 0]
    assert top_digits(probabilities) == [(1, 0.6), (3, 0.2), (8, 0.1)]
    assert describe("a.png", probabilities) == "a.png: 1 (1 0.600, 3 0.200, 8 0.100)"


def test_bad_files_are_refused_with_a_reason_and_the_rest_kept(tmp_path):
    folder = tmp_path / "scans"
    (folder / "nested").mkdir(parents=True)
    (folder / "good.png").write_bytes(digit_png(3))
    (folder / "nested" / "grey16.png").write_bytes(_png(Image.new("I;16", (30, 30), 0), ink=True))
    (folder / "notes.png").write_bytes(b"not an image")
    (folder / "truncated.png").write_bytes(digit_png(4)[:60])
    (folder / "blank.png").write_bytes(_png(Image.new("L", (28, 28), 255)))
    (folder / "readme.txt").write_text("skipped: not an image suffix")
    files, unreadable = image_files([str(folder)], None)
    assert [f.name for f in files] == [f"{folder}/{name}" for name in
                                       ("blank.png", "good.png", "nested/grey16.png", "notes.png", "truncated.png")]
    assert unreadable == []
    accepted, refused = scorable(files, 4096 * 4096)
    assert sorted(path.rsplit("/", 1)[-1] for path, _ in accepted) == ["good.png", "grey16.png"]
    reasons = {item.path.rsplit("/", 1)[-1]: item.reason for item in refused}
    assert reasons["notes.png"] == "not an image (unrecognised format)"
    assert "truncated" in reasons["truncated.png"] and reasons["blank.png"].startswith("holds no digit")
    missing = image_files([str(tmp_path / "missing.png")], None)[0]
    assert scorable(missing, 100)[1][0].reason.startswith("cannot read")


def test_a_zip_is_read_in_memory_its_images_named_below_it_and_an_unsafe_one_refused(tmp_path):
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("batch/b.png", digit_png(5))
        out.writestr("batch\\sub\\a.JPG", _jpeg(digit_png(2)))
        out.writestr("batch/notes.png", b"not an image")
        out.writestr("batch/readme.txt", "skipped: not an image suffix")
        out.writestr("__MACOSX/batch/._b.png", b"resource fork")
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as out:
        out.writestr("../evil.png", digit_png(1))
    not_a_zip = tmp_path / "renamed.zip"
    not_a_zip.write_bytes(digit_png(7))
    files, unreadable = image_files([str(archive), str(escaping), str(not_a_zip)], None)
    assert [f.name for f in files] == [f"{archive}/batch/b.png", f"{archive}/batch/notes.png",
                                       f"{archive}/batch/sub/a.JPG"]
    assert files[0].read() == digit_png(5)
    assert [(item.path, item.reason.split(";")[0]) for item in unreadable] == [
        (str(escaping), "zip member '../evil.png' escapes the archive's folder"),
        (str(not_a_zip), "not a readable zip archive")]
    accepted, refused = scorable(files, 4096 * 4096)
    assert [path for path, _ in accepted] == [f"{archive}/batch/b.png", f"{archive}/batch/sub/a.JPG"]
    assert [item.path for item in refused] == [f"{archive}/batch/notes.png"]
    too_big = image_files([str(archive)], None, max_zip_bytes=100)[1]
    assert too_big[0].reason.startswith("zip expands to more than 100 bytes")


def test_a_member_damaged_inside_its_zip_is_refused_and_the_others_kept(tmp_path):
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr("a.png", digit_png(3))
        out.writestr("b.png", digit_png(4))
        out.writestr("c.png", digit_png(5))
    content = bytearray(archive.read_bytes())
    content[content.index(digit_png(4)) + 100] ^= 0xFF  # b.png's bytes no longer match its CRC
    central = content.rindex(b"PK\x01\x02")  # c.png's entry in the central directory, the last one
    content[central + 8] |= 0x1  # flagged as encrypted, as a zip tool writes a member protected by a password
    archive.write_bytes(bytes(content))
    accepted, refused = scorable(image_files([str(archive)], None)[0], 4096 * 4096)
    assert [path for path, _ in accepted] == [f"{archive}/a.png"]
    assert refused[0].path == f"{archive}/b.png" and refused[0].reason.startswith("cannot read: damaged in its archive")
    assert refused[1].path == f"{archive}/c.png"
    assert refused[1].reason == "cannot read: encrypted in its archive: it needs a password"



def test_files_read_at_once_keep_their_order_and_verdicts(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for index in range(120):
            out.writestr(f"{index:03d}.png", digit_png(index % 10) if index % 7 else b"not an image")
    files = image_files([str(archive)], None)[0]
    one_at_a_time, at_once = scorable(files, 4096 * 4096, threads=1), scorable(files, 4096 * 4096, threads=16)
    assert at_once == one_at_a_time
    assert [path for path, _ in at_once[0]] == [f.name for index, f in enumerate(files) if index % 7]
    assert len(at_once[1]) == 18 and all(item.reason.startswith("not an image") for item in at_once[1])


def test_a_folder_or_zip_without_images_is_refused_saying_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    holds_a_zip = tmp_path / "downloads"
    holds_a_zip.mkdir()
    (holds_a_zip / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(holds_a_zip / "scans.zip", "w") as out:
        out.writestr("a.png", digit_png(3))
    text_only = tmp_path / "text.zip"
    with zipfile.ZipFile(text_only, "w") as out:
        out.writestr("readme.txt", "no images here")
    files, refused = image_files([str(tmp_path / "empty"), str(holds_a_zip), str(text_only)], None)
    assert files == []
    reasons = {item.path: item.reason for item in refused}
    assert reasons[str(tmp_path / "empty")] == "no image file in it: it holds no file"
    assert reasons[str(holds_a_zip)].startswith("no image file in it: 2 files, none ending in .png, .jpg")
    assert reasons[str(holds_a_zip)].endswith("an archive inside is opened only when named itself, such as scans.zip")
    assert reasons[str(text_only)].startswith("no image file in it: 1 file, none ending in .png")
    assert image_files([str(holds_a_zip / "scans.zip")], None)[1] == []


def _jpeg(png: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def _png(image, ink=False):
    if ink:
        from PIL import ImageDraw

        ImageDraw.Draw(image).line((5, 5, 25, 25), fill=40000, width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_the_prediction_table_is_in_id_order_with_confidence_and_margin():
    import numpy as np

    from numtaflow.scoring import PROBABILITY_COLUMNS, prediction_table

    probabilities = np.zeros((2, 10))
    probabilities[0, [3, 5]] = [0.7, 0.3]
    probabilities[1, [1, 8]] = [0.55, 0.45]
    table = prediction_table(["b.png", "a.png"], ["s3://x/b.png", "s3://x/a.png"], [3, 1], probabilities, "v1")
    assert list(table["image_id"]) == ["a.png", "b.png"] and list(table["digit"]) == [1, 3]
    assert table["margin"].round(6).tolist() == [0.1, 0.4] and table["confidence"].tolist() == [0.55, 0.7]
    assert list(table.columns) == ["image_id", "path", "digit", *PROBABILITY_COLUMNS, "confidence", "margin",
                                   "model_version"]
    assert set(table["model_version"]) == {"v1"}


def test_drift_figures():
    from numtaflow.scoring import chi_square_p, digit_counts, population_stability

    uniform = [50] * 10
    assert digit_counts([0, 0, 9, 3]) == [2, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert population_stability(uniform, [100] * 10) == 0.0
    assert population_stability(uniform, [20] * 10) == 0.0  # shares, not counts
    skewed = [500] + [10] * 9
    assert population_stability(uniform, skewed) > 1.0 and chi_square_p(uniform, skewed) < 1e-6
    assert 0 < population_stability(uniform, [60, 40] + [50] * 8) < 0.05
    assert chi_square_p(uniform, [50] * 10) == 1.0
    assert population_stability(uniform, [0] + [50] * 9) < 1.5  # an empty digit stays finite


def test_a_small_batch_is_not_flagged_for_drift_by_chance():
    from numtaflow.scoring import chi_square_p, drifted, population_stability

    small = [2, 0, 2, 1, 1, 0, 1, 0, 2, 1]  # 10 images: PSI 2.3, yet nothing a test can tell from uniform
    psi, p_value = population_stability([6] * 10, small), chi_square_p([6] * 10, small)
    assert psi > 2 and p_value > 0.5 and not drifted(psi, p_value, 0.2)
    shifted = [300] + [22] * 9
    assert drifted(population_stability([50] * 10, shifted), chi_square_p([50] * 10, shifted), 0.2)


def test_low_confidence_and_the_review_order():
    import pandas as pd

    from numtaflow.scoring import least_confident, low_confidence_share

    assert low_confidence_share([0.9, 0.5, 0.69, 0.7], 0.7) == 0.5 and low_confidence_share([], 0.7) == 0.0
    table = pd.DataFrame({"image_id": ["c", "a", "b"], "confidence": [0.4, 0.9, 0.4]})
    assert list(least_confident(table, 2)["image_id"]) == ["b", "c"]


def test_thumbnails_are_small_grey_pngs():
    from numtaflow.images import thumbnail_png

    big = Image.new("RGB", (400, 300), (255, 255, 255))
    thumb = Image.open(io.BytesIO(thumbnail_png(_png(big))))
    assert thumb.format == "PNG" and thumb.mode == "L" and max(thumb.size) == 96
    grey16 = Image.open(io.BytesIO(thumbnail_png(_png(Image.new("I;16", (30, 20), 0), ink=True))))
    assert grey16.size == (96, 64)  # a small scan enlarged, so a person can see it


def test_predict_reads_checks_and_classifies_a_chunk_at_a_time_and_answers_in_the_files_order(tmp_path):
    names = ["a.png", "b.png", "bad.png", "c.png", "d.png", "worse.png", "e.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"not an image" if "bad" in name or "worse" in name else digit_png(3))
    files, _ = image_files([str(tmp_path)], None)
    chunks = []

    def classify(images):
        chunks.append([path.rsplit("/", 1)[-1] for path, _ in images])
        return [[1.0 if digit == len(chunks) else 0.0 for digit in range(10)] for _ in images]

    lines = list(prediction_lines(files, 4096 * 4096, classify, chunk=3))
    assert chunks == [["a.png", "b.png"], ["c.png", "d.png", "e.png"]]  # a chunk of 3 files, less its refused ones
    assert [line.split(": ", 1)[0].rsplit("/", 1)[-1] for line, _ in lines] == sorted(names)
    assert [scored for _, scored in lines] == [True, True, False, True, True, True, False]
    assert lines[2][0] == f"{tmp_path}/bad.png: refused: not an image (unrecognised format)"
    assert lines[3][0] == f"{tmp_path}/c.png: 2 (2 1.000, 0 0.000, 1 0.000)"
    assert list(prediction_lines(files[6:], 4096 * 4096, classify)) == [(lines[6][0], False)] and len(chunks) == 2


def test_an_image_spark_would_skip_as_hidden_is_refused_with_why_in_a_folder_and_in_a_zip(tmp_path):
    """`_0001.png` is hidden from Spark's file reader: predict gives it the line the workflow would
    (refused, with the reason), from a folder as from a zip; dot files stay unlisted."""
    from numtaflow.data import HIDDEN_REASON

    folder = tmp_path / "scans"
    (folder / "_drafts").mkdir(parents=True)
    for name in ("a.png", "_0001.png", "_drafts/b.png", "._a.png"):
        (folder / name).write_bytes(digit_png(3))
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name in ("a.png", "_0001.png", "_drafts/b.png", "._a.png"):
            out.write(folder / name, name)
    for source in (folder, archive):
        files, refused = image_files([str(source)], None)
        assert [f.name for f in files] == [f"{source}/a.png"]
        assert [(item.path, item.reason) for item in refused] == [
            (f"{source}/_0001.png", HIDDEN_REASON), (f"{source}/_drafts/b.png", HIDDEN_REASON)]


def test_withheld_labels_match_an_inbox_image_by_its_path_in_the_batch_and_any_other_by_its_id():
    import pandas as pd

    predictions = pd.DataFrame({
        "image_id": ["0:a1.png", "0:sub/a2.png", "1:a3.png", "scan.png"],
        "path": ["s3://b/inbox/dt=2026-12-07/scans-1/a1.png", "s3://b/inbox/dt=2026-12-07/scans-1/sub/a2.png",
                 "s3://b/inbox/dt=2026-12-08/scans-2/a3.png", "/home/me/scans/scan.png"],
        "digit": [3, 4, 5, 6]})
    labels = pd.DataFrame({"filename": ["a1.png", "sub/a2.png", "a3.png", "scan.png", "elsewhere.png"],
                           "digit": [3, 4, 9, 6, 1]})
    assert withheld_label_accuracy(predictions, labels, "labels.csv") == (0.75, 4)
    with pytest.raises(ValueError, match=r"^labels.csv: not one of its 1 file names is among the run's 4 scored "
                                         r"images \(such as 'a1.png'\): the labels belong to another batch"):
        withheld_label_accuracy(predictions, labels.iloc[4:], "labels.csv")
    with pytest.raises(ValueError, match=r"^labels.csv: no column digit \(found: filename, label\)"):
        withheld_label_accuracy(predictions, labels.rename(columns={"digit": "label"}), "labels.csv")
    with pytest.raises(ValueError, match=r"^labels.csv holds no labels$"):
        withheld_label_accuracy(predictions, labels.iloc[:0], "labels.csv")
    with pytest.raises(ValueError, match=r"^labels.csv: row 3 \(sub/a2.png\): 'four' is not a digit 0-9$"):
        withheld_label_accuracy(predictions, labels.assign(digit=["3", "four", "9", "6", "1"]), "labels.csv")
