"""Metrics from labels and class probabilities, the per-class report and the confusion plot."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

CLASSES = list(range(10))


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
    """Accuracy, weighted precision/recall/F1, OvR ROC AUC, per-class report, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    y_pred = np.asarray(classes)[probabilities.argmax(axis=1)]
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average="weighted", zero_division=0
    )
    per_precision, per_recall, per_f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average=None, zero_division=0
    )
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(f1), 4),
        "roc_auc": _round(roc_auc_ovr(y_true, probabilities, classes)),
        "n": int(len(y_true)),
        "per_class": {
            str(label): {
                "precision": round(float(per_precision[i]), 4),
                "recall": round(float(per_recall[i]), 4),
                "f1": round(float(per_f1[i]), 4),
                "support": int(support[i]),
            }
            for i, label in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def confusion_png(matrix: Sequence[Sequence[int]], title: str) -> bytes:
    """A labelled confusion-matrix heat map (rows: true digit, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(values.shape[1]))
    axes.set_yticks(range(values.shape[0]))
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title(title, fontsize=9)
    threshold = values.max() / 2 if values.size else 0
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            axes.text(column, row, str(values[row, column]), ha="center", va="center", fontsize=8,
                      color="white" if values[row, column] > threshold else "black")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def per_class_csv(metrics: dict) -> str:
    lines = ["digit,precision,recall,f1,support"]
    for label, row in metrics["per_class"].items():
        lines.append(f"{label},{row['precision']},{row['recall']},{row['f1']},{row['support']}")
    return "\n".join(lines) + "\n"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
