"""Great Expectations suites over an input's manifest (one row per image, no pixels).

Validating the small metadata table (name, label, file present, decoded size/mode/frames,
content hash, decode or preparation error, why an image is excluded) is cheap; the pixels were
decoded and prepared once, in Spark, to fill it. Expectations of severity "warning" report
images without failing the input (copies counted once, blank or tiny images excluded,
multi-frame images). The result is kept as JSON and rendered as an HTML page before the step
fails, so a failed run always leaves its report behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .templates import render
from .vocabulary import DIGIT_LABELS, MIN_IMAGE_SIDE, MIN_INK_CONTRAST

DIGITS = list(DIGIT_LABELS)
MAX_EXAMPLES = 10


@dataclass
class ValidationReport:
    """The outcome of every suite run on one or more inputs."""

    success: bool
    suites: list[dict[str, Any]] = field(default_factory=list)

    def failures(self) -> list[dict[str, Any]]:
        return [e for s in self.suites for e in s["expectations"] if not e["success"]]

    def warnings(self) -> list[dict[str, Any]]:
        return [e for s in self.suites for e in s["expectations"] if e.get("warning")]

    def summary(self) -> str:
        """A few lines naming each failing expectation, then each warning, with examples (for logs and errors)."""
        warned = f", with {len(self.warnings())} warning(s)" if self.warnings() else ""
        lines = ["all expectations passed" + warned] if self.success else [
            f"{len(self.failures())} expectation(s) failed{warned}:"]
        for shown in (lambda item: not item["success"], lambda item: item.get("warning")):
            for suite in self.suites:
                for item in filter(shown, suite["expectations"]):
                    examples = "; ".join(map(str, item["examples"][:MAX_EXAMPLES]))
                    lines.append(f"- [{suite['name']}] {item['description']}: {item['observed']}"
                                 + (f" (e.g. {examples})" if examples else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"success": self.success, "suites": self.suites}


def _expectations(per_class: int, require_csv_rows: bool):
    """The manifest suite: (expectation, human description); severity "warning" reports without failing."""
    import great_expectations.expectations as gxe

    items = [
        (gxe.ExpectTableRowCountToBeBetween(min_value=1), "the dataset is not empty"),
        (gxe.ExpectColumnValuesToBeUnique(column="image_id"), "image names are unique"),
        (gxe.ExpectColumnValuesToBeInSet(column="has_file", value_set=[True]), "every CSV row has an image file"),
        (gxe.ExpectColumnValuesToNotBeNull(column="label_raw"), "every image has a label"),
        (gxe.ExpectColumnValuesToBeInSet(column="label_raw", value_set=DIGITS), "labels are digits 0-9"),
        (gxe.ExpectColumnValuesToBeNull(column="decode_error"),
         "every image decodes and goes through featurize's preparation (orientation, grey, contrast, crop, resize)"),
        (gxe.ExpectColumnValuesToBeNull(column="label_conflict"),
         "images with the same bytes (sha256) have the same label"),
        (gxe.ExpectColumnValuesToBeNull(column="duplicate_of", severity="warning"),
         "each image's bytes appear once (a copy with the same label is counted once, as its first name)"),
        (gxe.ExpectColumnValuesToBeNull(column="excluded", severity="warning"),
         (f"every image shows ink and is at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels (an image smaller than "
          f"that, or blank: its darkest and lightest pixels fewer than {MIN_INK_CONTRAST} of 255 grey levels apart, "
          "is excluded from sampling)")),
        (gxe.ExpectColumnValuesToBeBetween(column="frames", max_value=1, severity="warning"),
         "every image has one frame (of a multi-frame GIF or TIFF, the first frame is used)"),
    ]
    if require_csv_rows:
        items.insert(3, (gxe.ExpectColumnValuesToBeInSet(column="in_csv", value_set=[True]),
                         "every image file has a CSV row"))
    class_items = [
        (gxe.ExpectColumnValuesToBeBetween(column="images", min_value=per_class),
         f"each class has at least {per_class} valid images (the per-class sample size)"),
    ]
    return items, class_items


def content_checks(manifest: pd.DataFrame) -> pd.DataFrame:
    """Add ``label_conflict`` (other names with the same bytes and another label) and ``duplicate_of``
    (for a copy with the same label, the first name, which alone is counted). A name listed twice is
    "image names are unique"'s to report, not a copy."""
    frame = manifest.assign(label_conflict=None, duplicate_of=None)
    hashed = frame[frame["content_sha256"].notna()]
    copies = hashed[hashed["content_sha256"].duplicated(keep=False)].sort_values("image_id")
    for _, group in copies.groupby("content_sha256"):
        rows = list(zip(group.index, group["image_id"], group["label_raw"].astype(str)))
        for index, name, label in rows:
            others = [f"{other} (label {other_label!r})" for _, other, other_label in rows
                      if other != name and other_label != label]
            if others:
                frame.loc[index, "label_conflict"] = "same bytes as " + ", ".join(others[:3])
            elif name != rows[0][1] and len(set(group["label_raw"].astype(str))) == 1:
                frame.loc[index, "duplicate_of"] = rows[0][1]
    return frame


def class_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Valid images per label: with a file, a digit label, decoded and prepared, not excluded, copies once."""
    valid = manifest[manifest["has_file"] & manifest["label_raw"].isin(DIGITS) & manifest["decode_error"].isna()
                     & manifest["excluded"].isna() & manifest["label_conflict"].isna() & manifest["duplicate_of"].isna()]
    counts = valid.groupby("label_raw").size().reindex(DIGITS, fill_value=0)
    return pd.DataFrame({"label": counts.index.astype(str), "images": counts.values.astype("int64")})


def structure_failure(name: str, problem: str) -> dict:
    """A suite record for an input that could not even be read as a table (no CSV columns...)."""
    return {
        "name": name,
        "rows": 0,
        "success": False,
        "class_counts": {},
        "expectations": [
            {
                "expectation": "input_is_readable",
                "kwargs": {},
                "description": "the input can be read as a labelled image dataset",
                "success": False,
                "observed": problem,
                "examples": [],
            }
        ],
    }


def validate_manifest(name: str, manifest: pd.DataFrame, per_class: int, require_csv_rows: bool,
                      source: str = "") -> dict:
    """Run the suites on one input's manifest (``source`` names the input); returns a JSON-ready suite record."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # a bar per expectation floods the task log
    data_source = context.data_sources.add_pandas(f"{name}_source")
    items, class_items = _expectations(per_class, require_csv_rows)
    manifest = content_checks(manifest)
    counts = class_counts(manifest)
    records = []
    for table_name, frame, suite_items, index_column in (
        ("manifest", manifest.reset_index(drop=True), items, "image_id"),
        ("class_counts", counts, class_items, "label"),
    ):
        batch = (
            data_source.add_dataframe_asset(f"{name}_{table_name}")
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        for expectation, description in suite_items:
            result = batch.validate(
                expectation,
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]},
            )
            records.append(_record(expectation, description, result, frame, index_column, source))
    return {
        "name": name,
        "rows": int(len(manifest)),
        "success": all(r["success"] for r in records),
        "class_counts": dict(zip(counts["label"], counts["images"].tolist())),
        "expectations": records,
    }


def _record(expectation, description: str, result, frame: pd.DataFrame, index_column: str, source: str) -> dict:
    body = result.to_json_dict()
    details = body.get("result") or {}
    examples = []
    keys = [e.get(index_column) if isinstance(e, dict) else e for e in details.get("unexpected_index_list") or []]
    for key in list(dict.fromkeys(keys))[:MAX_EXAMPLES]:
        detail = _detail(frame, index_column, key, expectation)
        examples.append(f"{key}: {detail}" if detail else str(key))
    warning = expectation.severity.value == "warning"
    if "unexpected_count" in details:
        count = f"{details['unexpected_count']} of {details.get('element_count', len(frame))} rows"
        observed = f"{count} fail" if not warning else f"warning: {count}" if details["unexpected_count"] else count
    elif getattr(expectation, "column", None) is None and source:
        observed = f"{details.get('observed_value')!r} rows in {source}"
    else:
        observed = f"observed {details.get('observed_value')!r}"
    if not examples and body.get("exception_info", {}).get("raised_exception"):
        observed = f"could not be evaluated: {body['exception_info'].get('exception_message')}"
    success = bool(body.get("success"))
    return {
        "expectation": expectation.expectation_type,
        "kwargs": {k: getattr(expectation, k) for k in ("column", "value_set", "min_value", "max_value")
                   if getattr(expectation, k, None) is not None},
        "description": description,
        "severity": expectation.severity.value,
        "success": success or warning,  # a warning never fails the input
        "warning": warning and not success,
        "observed": observed,
        "examples": examples,
    }


def _detail(frame: pd.DataFrame, index_column: str, key: Any, expectation) -> str:
    """What is wrong with one failing row, in words (the decode error, the bad label...)."""
    column = getattr(expectation, "column", None)
    if index_column != "image_id" or column is None:
        if column == "images":
            return f"{int(frame.loc[frame[index_column] == key, 'images'].iloc[0])} images"
        return ""
    rows = frame.loc[frame["image_id"] == key]
    if rows.empty:
        return ""
    value = rows.iloc[0][column]
    if column in ("decode_error", "excluded", "label_conflict"):
        return str(value)
    if column == "duplicate_of":
        return f"same bytes as {value}, counted once"
    if column == "frames":
        return f"{int(value)} frames, the first is used"
    if column == "has_file":
        return "listed in the CSV but no such file"
    if column == "in_csv":
        return "file has no CSV row"
    if column == "label_raw":
        return f"label {value!r}" if not pd.isna(value) else "no label"
    if column == "image_id":
        return f"appears {int((frame['image_id'] == key).sum())} times"
    return repr(value)


def render_html(report: ValidationReport, title: str) -> str:
    """A self-contained page: one table per suite, failing expectations first, with examples."""
    return render("validation.html", title=title, report=report)
