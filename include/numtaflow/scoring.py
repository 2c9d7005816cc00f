"""Classifying new, unlabelled images with a saved pipeline: which model a scoring run uses (pinned
once), which files can be scored (checked by validation's own rules), the predictions table, and
what the batch report says about them (drift of the predicted digits, low-confidence share, the
images a person should review)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .contracts import PinnedModel
from .data import (HIDDEN_REASON, IMAGE_SUFFIXES, MAX_ZIP_BYTES, InputError, hidden_from_spark, is_image_name, is_zip,
                   list_input, member_name, open_zip, read_bytes, read_member, safe_zip_members)
from .images import inspect_image
from .registry import RegistryError, find_model, now_iso
from .storage import Storage
from .vocabulary import DIGITS

PROBABILITY_COLUMNS = [f"p_{digit}" for digit in DIGITS]
READ_THREADS = 16  # files read at once by `predict`: S3 round trips overlap
PREDICT_CHUNK = 512  # files `predict` reads, checks and classifies at a time: what its driver holds


@dataclass(frozen=True)
class Refused:
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: refused: {self.reason}"


@dataclass(frozen=True)
class ImageFile:
    """A file to score; its bytes are read only when it is scored, one file at a time."""

    name: str  # as the user will read it: a path, an s3:// URI, or <archive>.zip/<member>
    read: Callable[[], bytes]  # raises OSError when the bytes cannot be had


def image_files(paths: Iterable[str], storage: Storage | None,
                max_zip_bytes: int = MAX_ZIP_BYTES) -> tuple[list[ImageFile], list[Refused]]:
    """The files named, and the image files inside the folders and ``.zip`` archives named (recursively,
    sorted), local or ``s3://``; an archive that cannot be opened safely, or a folder or archive with
    no image file in it, is refused with its reason, as is an image the workflow's Spark steps would
    skip as hidden (``hidden_from_spark``), so that it gets the same line in either."""
    found, refused = [], []
    for path in paths:
        folder = path.rstrip("/") + "/"
        if is_zip(path):
            try:
                images, members = archive_images(path, storage, max_zip_bytes)
            except (OSError, InputError) as error:
                refused.append(Refused(path, _reason(error)))
                continue
            skipped = [hidden_from_spark(image.name[len(folder):]) for image in images]
            hidden = [image.name for image, skip in zip(images, skipped) if skip]
            images = [image for image, skip in zip(images, skipped) if not skip]
        else:
            try:
                listed, hidden_members = list_input(path, storage)
            except InputError:  # not a folder: the file itself
                found.append(ImageFile(path, partial(read_bytes, path, storage)))
                continue
            members = [file.relative_path for file in listed]
            hidden = [folder + member for member in hidden_members]
            images = [ImageFile(folder + member, partial(read_bytes, folder + member, storage))
                      for member in members if is_image_name(member)]
        found += images
        refused += [Refused(name, HIDDEN_REASON) for name in hidden]
        if not images and not hidden:
            refused.append(Refused(path, _no_image_reason(members)))
    return found, refused


def _no_image_reason(names: Sequence[str]) -> str:
    """Why a folder or archive holding ``names`` gave nothing to score, and what the user can name
    instead: zips inside a folder are opened only when named themselves."""
    if not names:
        return "no image file in it: it holds no file"
    files = f"{len(names)} file" + ("s" if len(names) > 1 else "")
    reason = f"no image file in it: {files}, none ending in {', '.join(IMAGE_SUFFIXES)}"
    archives = [name for name in names if is_zip(name)]
    if archives:
        reason += f"; an archive inside is opened only when named itself, such as {archives[0]}"
    return reason


def archive_images(path: str, storage: Storage | None, max_total_bytes: int) -> tuple[list[ImageFile], list[str]]:
    """The image files inside a zip archive, each read from it when scored (nothing is extracted), and
    the names of all its members; the whole archive is refused for a member that would escape it or a
    declared size above ``max_total_bytes``."""
    archive = open_zip(path, storage)
    members = {member_name(info): info for info in safe_zip_members(archive, max_total_bytes)}
    images = [ImageFile(f"{path}/{name}", partial(read_member, archive, info))
              for name, info in sorted(members.items()) if is_image_name(name)]
    return images, sorted(members)


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def scorable(files: Iterable[ImageFile], max_pixels: int,
             threads: int = READ_THREADS) -> tuple[list[tuple[str, bytes]], list[Refused]]:
    """Split files into those the featurizer can take (with their bytes) and those refused, each with
    the reason validation would give: one bad scan never blocks the others. Files are read and checked
    ``threads`` at a time (reading S3 objects waits on round trips, not on the CPU), in their order."""
    with ThreadPoolExecutor(threads) as pool:
        checked = list(pool.map(partial(_checked, max_pixels=max_pixels), files))
    accepted = [(file.name, content) for file, content, problem in checked if problem is None]
    refused = [Refused(file.name, problem) for file, _, problem in checked if problem is not None]
    return accepted, refused


def _checked(file: ImageFile, max_pixels: int) -> tuple[ImageFile, bytes | None, str | None]:
    """The file, its bytes when it can be scored, else why not."""
    try:
        content = file.read()
    except OSError as error:
        return file, None, f"cannot read: {_reason(error)}"
    info = inspect_image(content, max_pixels)
    problem = info.error or (f"holds no digit: {info.excluded}" if info.excluded else None)
    return file, None if problem else content, problem


def prediction_lines(files: Sequence[ImageFile], max_pixels: int,
                     classify: Callable[[list[tuple[str, bytes]]], Sequence[Sequence[float]]],
                     chunk: int = PREDICT_CHUNK) -> Iterator[tuple[str, bool]]:
    """A line per file, in the files' order, and whether it was scored. ``chunk`` files at a time are
    read, checked and handed to ``classify`` (their probabilities, in order), so the driver holds one
    chunk's bytes however many files it is given, and the first lines come out before the last file
    is read."""
    for start in range(0, len(files), chunk):
        part = files[start:start + chunk]
        accepted, refused = scorable(part, max_pixels)
        probabilities = dict(zip([name for name, _ in accepted], classify(accepted))) if accepted else {}
        refusals = {item.path: item for item in refused}
        for file in part:
            if file.name in probabilities:
                yield describe(file.name, probabilities[file.name]), True
            else:
                yield refusals[file.name].line(), False


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


def withheld_label_accuracy(predictions: pd.DataFrame, labels: pd.DataFrame, source: str) -> tuple[float, int]:
    """(accuracy, images compared) of a scoring run's digits against labels kept aside from it (columns
    ``filename`` and ``digit``, as ``inbox-batch --labels-out`` writes them): an inbox image is named by its path
    within its batch (also when a day's folder was scored again), any other by its image id. Raises
    ``ValueError`` naming ``source`` when the columns are missing, a label is not a digit or not one name
    matches."""
    missing = [column for column in ("filename", "digit") if column not in labels.columns]
    if missing:
        raise ValueError(f"{source}: no column {', '.join(missing)} (found: {', '.join(map(str, labels.columns))}); "
                         "the withheld labels need filename,digit, as `inbox-batch --labels-out` writes them")
    if labels.empty:
        raise ValueError(f"{source} holds no labels")
    digits = pd.to_numeric(labels["digit"], errors="coerce")
    not_digits = labels.index[~digits.isin(DIGITS)]
    if len(not_digits):
        row = not_digits[0]
        raise ValueError(f"{source}: row {row + 2} ({labels.loc[row, 'filename']}): {labels.loc[row, 'digit']!r} is "
                         "not a digit 0-9")
    names = predictions["path"].str.extract(r"/dt=[^/]+/[^/]+/(.+)$")[0].fillna(predictions["image_id"])
    withheld = pd.DataFrame({"filename": labels["filename"].astype(str), "withheld": digits})
    named = pd.DataFrame({"filename": names, "digit": predictions["digit"]}).merge(withheld, on="filename")
    if named.empty:
        example = f" (such as {names.iloc[0]!r})" if len(names) else ""
        raise ValueError(f"{source}: not one of its {len(withheld)} file names is among the run's {len(names)} "
                         f"scored images{example}: the labels belong to another batch")
    return float((named["digit"] == named["withheld"]).mean()), len(named)


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
