import subprocess
import sys

import pandas as pd
import pytest

from numtaflow.quality import ValidationReport, render_html, structure_failure, validate_manifest
from numtaflow.spark import package_archive

pytestmark = pytest.mark.filterwarnings("ignore")


def manifest(rows, **columns):
    """A manifest as the validate step builds it; ``columns`` set per-image values by name."""
    frame = pd.DataFrame(rows, columns=["image_id", "label_raw", "in_csv", "has_file", "decode_error"])
    frame["label_raw"] = frame["label_raw"].astype("string")
    frame["size"] = 1
    frame["frames"] = 1
    frame["excluded"] = None
    frame["content_sha256"] = "sha-" + frame["image_id"].astype(str)
    for column, values in columns.items():
        for image_id, value in values.items():
            frame.loc[frame["image_id"] == image_id, column] = value
    return frame


def good_rows(per_class=2):
    return [(f"{d}_{i}.png", str(d), True, True, None) for d in range(10) for i in range(per_class)]


DECODES = "every image decodes and goes through featurize's preparation (orientation, grey, contrast, crop, resize)"


def failing(record):
    return {e["description"]: e for e in record["expectations"] if not e["success"]}


def test_clean_manifest_passes(capfd):
    record = validate_manifest("train", manifest(good_rows()), per_class=2, require_csv_rows=True)
    assert "Calculating Metrics" not in capfd.readouterr().err  # no progress bar per expectation in the task log
    assert record["success"], failing(record)
    assert record["class_counts"]["7"] == 2
    assert not warned(record) and "0 of 20 rows" in [e["observed"] for e in record["expectations"]]


def test_each_defect_is_named_with_the_offending_file():
    rows = good_rows() + [
        ("bad_label.png", "x", True, True, None),
        ("big_label.png", "12", True, True, None),
        ("truncated.png", "1", True, True, "cannot decode: image file is truncated"),
        ("no_file.png", "2", True, False, None),
        ("no_row.png", None, False, True, None),
        ("0_0.png", "0", True, True, None),  # duplicate name
    ]
    record = validate_manifest("train", manifest(rows), per_class=2, require_csv_rows=True)
    failures = failing(record)
    assert not record["success"]
    assert failures["labels are digits 0-9"]["examples"] == ["bad_label.png: label 'x'", "big_label.png: label '12'"]
    assert failures[DECODES]["examples"] == ["truncated.png: cannot decode: image file is truncated"]
    assert failures["every CSV row has an image file"]["examples"] == ["no_file.png: listed in the CSV but no such file"]
    assert failures["every image file has a CSV row"]["examples"] == ["no_row.png: file has no CSV row"]
    assert failures["every image has a label"]["examples"] == ["no_row.png: no label"]
    assert failures["image names are unique"]["examples"] == ["0_0.png: appears 2 times"]
    assert "each class has at least 2 valid images (the per-class sample size)" not in failures


def test_too_few_images_per_class_and_empty_dataset():
    record = validate_manifest("train", manifest(good_rows(1)), per_class=3, require_csv_rows=True)
    examples = failing(record)["each class has at least 3 valid images (the per-class sample size)"]["examples"]
    assert examples[0] == "0: 1 images"
    empty = validate_manifest("train", manifest([]), per_class=3, require_csv_rows=True, source="/data/training-e")
    assert failing(empty)["the dataset is not empty"]["observed"] == "0 rows in /data/training-e"


def warned(record):
    return {e["description"]: e for e in record["expectations"] if e.get("warning")}


def test_copies_with_other_labels_fail_naming_both_files():
    rows = good_rows() + [("copy_of_1_0.png", "7", True, True, None), ("2_0.png", "x", True, True, None)]
    record = validate_manifest("train", manifest(rows, content_sha256={"copy_of_1_0.png": "sha-1_0.png"}), 2, True)
    assert not record["success"]
    assert failing(record)["images with the same bytes (sha256) have the same label"]["examples"] == [
        "1_0.png: same bytes as copy_of_1_0.png (label '7')", "copy_of_1_0.png: same bytes as 1_0.png (label '1')"]
    assert failing(record)["image names are unique"]["examples"] == ["2_0.png: appears 2 times"]  # not a copy
    assert record["class_counts"]["1"] == 1 and record["class_counts"]["7"] == 2  # label noise is not counted


def test_copies_blank_tiny_and_multi_frame_images_are_warnings_and_not_counted():
    rows = good_rows() + [("1_copy.png", "1", True, True, None), ("dt=2026-11-01/b/1_0.png", "1", True, True, None),
                          ("blank.png", "3", True, True, None), ("dot.png", "3", True, True, None),
                          ("anim.gif", "4", True, True, None)]
    frame = manifest(rows, content_sha256={"1_copy.png": "sha-1_0.png", "dt=2026-11-01/b/1_0.png": "sha-1_0.png"},
                     excluded={"blank.png": "no ink: grey levels 255 to 255, fewer than 32 apart",
                               "dot.png": "too small: 1x1 < 8x8 pixels"},
                     frames={"anim.gif": 2})
    record = validate_manifest("train", frame, per_class=2, require_csv_rows=True)
    assert record["success"], failing(record)
    assert record["class_counts"] == {**{str(d): 2 for d in range(10)}, "4": 3}  # copies and exclusions not counted
    warnings = warned(record)
    unique = warnings["each image's bytes appear once (a copy with the same label is counted once, as its first name)"]
    assert unique["observed"] == "warning: 2 of 25 rows"
    assert unique["examples"] == ["1_copy.png: same bytes as 1_0.png, counted once",
                                  "dt=2026-11-01/b/1_0.png: same bytes as 1_0.png, counted once"]
    usable = warnings[USABLE]
    assert usable["examples"] == ["blank.png: no ink: grey levels 255 to 255, fewer than 32 apart",
                                  "dot.png: too small: 1x1 < 8x8 pixels"]
    frames = warnings["every image has one frame (of a multi-frame GIF or TIFF, the first frame is used)"]
    assert frames["examples"] == ["anim.gif: 2 frames, the first is used"]
    summary = ValidationReport(True, [record]).summary()
    assert summary.startswith("all expectations passed, with 3 warning(s)\n- [train] ")
    assert "- [train] " + USABLE + ": warning: 2 of 25 rows (e.g. blank.png: no ink" in summary


USABLE = ("every image shows ink and is at least 8x8 pixels (an image smaller than that, or blank: its darkest "
          "and lightest pixels fewer than 32 of 255 grey levels apart, is excluded from sampling)")


def test_report_summary_and_html_name_failures():
    record = validate_manifest("eval", manifest(good_rows() + [("bad.png", "x", True, True, None)]), 2, True)
    report = ValidationReport(record["success"], [record])
    assert "[eval] labels are digits 0-9: 1 of 21 rows fail (e.g. bad.png: label 'x')" in report.summary()
    page = render_html(report, "validation <run>")
    assert "FAIL" in page and "bad.png: label &#39;x&#39;" in page and "&lt;run&gt;" in page


def test_html_escapes_file_names_and_errors_from_the_input():
    hostile = "<script>alert(1)</script>"
    record = validate_manifest("eval", manifest(good_rows() + [(hostile, "1", True, True, hostile)]), 2, True)
    page = render_html(ValidationReport(False, [record, structure_failure(hostile, hostile)]), hostile)
    assert "<script" not in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_spark_driver_renders_the_report_from_the_shipped_archive():
    """The validate job imports the package from the --py-files zip: the templates must be in it."""
    probe = ("import numtaflow.quality as q; assert '.zip' in q.__file__; "
             "print(q.render_html(q.ValidationReport(True, []), 'from the zip'))")
    result = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": package_archive()},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<h1>from the zip</h1>" in result.stdout and "PASSED: all expectations passed" in result.stdout
