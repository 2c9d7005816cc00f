"""Metrics from labels and class probabilities, the per-class report and the confusion plot."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .vocabulary import DIGITS

CLASSES = list(DIGITS)


def roc_auc_ovr(y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[int] = CLASSES) -> float | None:
    """Macro one-vs-rest ROC AUC from probabilities, over the classes present in ``y_true``.

    A class absent from a small hold-out has no ROC curve; averaging over the present ones
    keeps the figure defined instead of failing the run.
    """
    from sklearn.metrics import roc_auc_score

    scores = []
    for index, label in enumerate(classes):
        positives = y_true == label
        if 0 < positives.sum() < len(y_true):
            scores.append(roc_auc_score(positives, probabilities[:, index]))
    return float(np.mean(scores)) if scores else None


def compute_metrics(y_true: Sequence[int], probabilities: np.ndarray, classes: Sequence[int] = CLASSES) -> dict:
    """Accuracy, weighted precision/recall/F1, OvR ROC AUC, per-class report, confusion matrix.

    Every class is reported, with zeros where a small hold-out never predicts or holds it.
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    y_pred = np.asarray(classes)[probabilities.argmax(axis=1)]
    names = [str(label) for label in classes]
    report = classification_report(y_true, y_pred, labels=classes, target_names=names, output_dict=True,
                                   zero_division=0)
    weighted = report["weighted avg"]
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "precision": round(weighted["precision"], 4),
        "recall": round(weighted["recall"], 4),
        "f1": round(weighted["f1-score"], 4),
        "roc_auc": _round(roc_auc_ovr(y_true, probabilities, classes)),
        "n": int(len(y_true)),
        "per_class": {
            name: {
                "precision": round(report[name]["precision"], 4),
                "recall": round(report[name]["recall"], 4),
                "f1": round(report[name]["f1-score"], 4),
                "support": int(report[name]["support"]),
            }
            for name in names
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (steps and tests have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot().close(figure)
    return buffer.getvalue()


def confusion_png(matrix: Sequence[Sequence[int]], title: str) -> bytes:
    """A labelled confusion-matrix heat map (rows: true digit, columns: predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = pyplot().subplots(figsize=(6.4, 5.6), dpi=110)
    ConfusionMatrixDisplay(np.asarray(matrix)).plot(ax=axes, cmap="Blues", values_format="d")
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title(title, fontsize=9)
    return png_bytes(figure)


def confused_pairs(confusion: list[list[int]], top: int = 5) -> list[dict[str, int]]:
    """The most frequent mistakes: (true digit, predicted digit, count), most frequent first."""
    mistakes = [{"true": true, "predicted": predicted, "count": count}
                for true, row in enumerate(confusion) for predicted, count in enumerate(row)
                if true != predicted and count]
    return sorted(mistakes, key=lambda m: (-m["count"], m["true"], m["predicted"]))[:top]


def misclassified_ids(predictions, pairs: list[dict[str, int]], per_pair: int) -> list[list[str]]:
    """For each pair, up to ``per_pair`` ids (in id order) of images with that label read as that digit;
    ``predictions`` is a frame of image_id, label and digit."""
    wrong = predictions[predictions["label"] != predictions["digit"]].sort_values("image_id")
    return [wrong[(wrong["label"] == pair["true"]) & (wrong["digit"] == pair["predicted"])]["image_id"]
            .head(per_pair).tolist() for pair in pairs]


def misclassified_png(examples: list[tuple[dict[str, int], list[bytes]]], title: str, per_row: int = 6) -> bytes:
    """One row per confused pair (``confused_pairs``' dicts) of real misclassified images, so a person
    sees what the model gets wrong, not only how often."""
    from PIL import Image

    rows = max(1, len(examples))
    figure, axes = pyplot().subplots(rows, per_row + 1, figsize=(1.1 * (per_row + 1) + 1.2, 1.15 * rows + 0.5), dpi=100,
                                squeeze=False, gridspec_kw={"width_ratios": [2.2] + [1] * per_row})
    for axis in axes.flat:
        axis.axis("off")
    if not examples:
        axes[0][0].text(0, 0.5, "no misclassified evaluation images", fontsize=9, va="center")
    for (pair, images), row in zip(examples, axes):
        row[0].text(0, 0.5, f"true {pair['true']}, read as {pair['predicted']}\n{pair['count']} time"
                    f"{'s' if pair['count'] != 1 else ''}", fontsize=8, va="center")
        for content, axis in zip(images[:per_row], row[1:]):
            axis.imshow(Image.open(io.BytesIO(content)).convert("L"), cmap="gray")
    figure.suptitle(title, fontsize=9)
    return png_bytes(figure)


def per_class_csv(metrics: dict) -> str:
    lines = ["digit,precision,recall,f1,support"]
    for label, row in metrics["per_class"].items():
        lines.append(f"{label},{row['precision']},{row['recall']},{row['f1']},{row['support']}")
    return "\n".join(lines) + "\n"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
