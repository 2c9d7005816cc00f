"""Classifying new, unlabelled images with a saved pipeline: which model a scoring run uses (pinned
once), which files can be scored (checked by validation's own rules), the predictions table, and
what the batch report says about them (drift of the predicted digits, low-confidence share, the
images a person should review)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .contracts import PinnedModel
from .images import inspect_image
from .registry import RegistryError, find_model, now_iso
from .storage import Storage
from .vocabulary import DIGITS

PROBABILITY_COLUMNS = [f"p_{digit}" for digit in DIGITS]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Refused:
    path: str
    reason: str


def image_files(paths: Iterable[str]) -> list[Path]:
    """The files named, and the image files inside the folders named (recursively, sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def scorable(paths: Iterable[Path], max_pixels: int) -> tuple[list[tuple[str, bytes]], list[Refused]]:
    """Split files into those the featurizer can take (with their bytes) and those refused, each with
    the reason validation would give: one bad scan never blocks the others."""
    accepted, refused = [], []
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError as error:
            refused.append(Refused(str(path), f"cannot read: {error.strerror or error}"))
            continue
        info = inspect_image(content, max_pixels)
        problem = info.error or (f"holds no digit: {info.excluded}" if info.excluded else None)
        if problem:
            refused.append(Refused(str(path), problem))
        else:
            accepted.append((str(path), content))
    return accepted, refused


def top_digits(probabilities: Sequence[float], k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most likely digits with their probabilities, most likely first."""
    ranked = sorted(enumerate(probabilities), key=lambda item: (-item[1], item[0]))
    return [(digit, float(p)) for digit, p in ranked[:k]]


def describe(path: str, probabilities: Sequence[float]) -> str:
    """One line a person or a shell script reads: the digit, then the three most likely."""
    top = top_digits(probabilities)
    return f"{path}: {top[0][0]} ({', '.join(f'{digit} {p:.3f}' for digit, p in top)})"


def pin_model(storage: Storage, key: str, requested: str) -> PinnedModel:
    """The model version a scoring run uses: read back if the run pinned one already (a retry, a
    re-run, the score step), else resolved now and written once (of two racing writers, both use the
    one written). A promotion in the middle of a run therefore never mixes two models."""
    try:
        return PinnedModel.model_validate(storage.get_json(key))
    except FileNotFoundError:
        pass
    model = find_model(storage, requested)
    if not model.pipeline_uri:
        raise RegistryError(f"version {model.version} of run {model.run_id} was saved without its pipeline: it "
                            "cannot classify images; promote a run trained since pipelines are saved")
    pin = PinnedModel(requested=requested, version=model.version, run_id=model.run_id,
                      pipeline_uri=model.pipeline_uri, pinned_at=now_iso())
    if storage.put_if_absent(key, pin.model_dump()):
        return pin
    return PinnedModel.model_validate(storage.get_json(key))


def prediction_table(image_ids: Sequence[str], paths: Sequence[str], digits: Sequence[int], probabilities: np.ndarray,
                     version: str) -> pd.DataFrame:
    """One row per image, in id order: the pipeline's digit, the probability of each digit, the margin
    between the two most likely (small: the model hesitates) and the model version."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(image_ids), len(DIGITS))
    ranked = np.sort(probabilities, axis=1)
    table = pd.DataFrame({"image_id": list(image_ids), "path": list(paths),
                          "digit": np.asarray(digits, dtype="int32")})
    table[PROBABILITY_COLUMNS] = probabilities
    table["confidence"] = ranked[:, -1]
    table["margin"] = ranked[:, -1] - ranked[:, -2]
    table["model_version"] = version
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)


def digit_counts(digits: Iterable[int]) -> list[int]:
    counts = np.bincount(np.asarray(list(digits), dtype=int), minlength=len(DIGITS))
    return counts[: len(DIGITS)].tolist()


def population_stability(expected: Sequence[float], observed: Sequence[float], floor: float = 1e-4) -> float:
    """PSI between two distributions over the digits (counts or shares): sum of (o - e) * ln(o / e)
    over shares, each floored so an empty digit stays finite. Under 0.1: stable; over 0.25: a shift."""
    e, o = (np.maximum(np.asarray(x, dtype=float) / max(float(np.sum(x)), 1e-12), floor) for x in (expected, observed))
    return float(np.sum((o - e) * np.log(o / e)))


def chi_square_p(expected: Sequence[float], observed: Sequence[int]) -> float:
    """The p-value of the observed digit counts under the expected distribution (chi-square test)."""
    from scipy.stats import chisquare

    observed = np.asarray(observed, dtype=float)
    shares = np.asarray(expected, dtype=float) / float(np.sum(expected))
    return float(chisquare(observed, shares * observed.sum()).pvalue)


DRIFT_P = 0.01  # the chi-square test must also reject "same distribution" at this level


def drifted(psi: float, p_value: float, threshold: float) -> bool:
    """A shift worth a person's look: PSI above ``threshold`` and a chi-square p-value under ``DRIFT_P``.
    On a few dozen images PSI swings widely by chance; the test keeps small batches from being flagged."""
    return psi > threshold and p_value < DRIFT_P


def low_confidence_share(confidence: Sequence[float], threshold: float) -> float:
    """The share of predictions whose top probability is below ``threshold``."""
    confidence = np.asarray(confidence, dtype=float)
    return float((confidence < threshold).mean()) if len(confidence) else 0.0


def least_confident(table: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` predictions a person should look at first: lowest top probability, then id."""
    return table.sort_values(["confidence", "image_id"], kind="stable").head(count)
