"""Classifying new, unlabelled images with a saved pipeline: which files can be scored (checked by
validation's own rules), and the most likely digits of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .images import inspect_image

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
