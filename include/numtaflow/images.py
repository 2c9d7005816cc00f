"""Decoding and preparing digit images: any size, any colour mode, dark or light ink.

Pure functions over bytes and arrays, shared by validation (does it decode and prepare, does it
hold a digit?) and featurization (what does the CNN see?): both run the same preparation.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .vocabulary import MIN_IMAGE_SIDE, MIN_INK_CONTRAST


@dataclass(frozen=True)
class ImageInfo:
    width: int | None
    height: int | None
    mode: str | None
    error: str | None
    frames: int | None = None  # of a GIF or TIFF with several, the first is used
    excluded: str | None = None  # why a prepared image holds no digit (blank, too small), or None
    sha256: str | None = None  # of the bytes: copies under other names are found by it


CHECK_SIZE = 32  # validation prepares every image as featurize does, resized to this size only


def inspect_image(content: bytes | None, max_pixels: int) -> ImageInfo:
    """Decode fully (truncation shows only on load), then run featurize's own preparation on it.

    Reports size, mode, frames, content hash and, for an image that fails, the reason: so every
    image that passes can be featurized. Images whose prepared square (the longer side
    squared) is above ``max_pixels`` are refused before their pixels are decoded, so that a
    decompression bomb costs nothing.
    """
    if not content:
        return ImageInfo(None, None, None, "empty file (0 bytes)")
    digest = hashlib.sha256(content).hexdigest()
    try:
        with Image.open(io.BytesIO(content)) as image:
            (width, height), mode, frames = image.size, image.mode, getattr(image, "n_frames", 1)
            found = partial(ImageInfo, width, height, mode, frames=frames, sha256=digest)
            side = max(width, height)
            if side * side > max_pixels:
                square = "" if width * height > max_pixels else f" (prepared as a {side}x{side} square)"
                return found(f"image too large: {width}x{height}{square} > {max_pixels} pixels")
            image.load()
            try:
                gray = luminance(image)
                prepare_gray(gray, CHECK_SIZE)
            except Exception as error:  # whatever would stop featurize, named here with its file
                return found(f"cannot prepare: {error}")
            return found(None, excluded=unusable(gray))
    except UnidentifiedImageError:
        return ImageInfo(None, None, None, "not an image (unrecognised format)", sha256=digest)
    except Image.DecompressionBombError as error:
        return ImageInfo(None, None, None, f"image too large: {error}", sha256=digest)
    except Exception as error:  # Pillow's decoders raise TypeError, IndexError, struct.error... on damaged files
        return ImageInfo(None, None, None, f"cannot decode: {str(error) or type(error).__name__}", sha256=digest)


def unusable(gray: np.ndarray) -> str | None:
    """Why a decoded image holds no digit to learn from (too small, no ink), or None."""
    height, width = gray.shape
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"too small: {width}x{height} < {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels"
    low, high = float(gray.min()), float(gray.max())
    if high - low < MIN_INK_CONTRAST:
        return f"no ink: grey levels {low:.0f} to {high:.0f}, fewer than {MIN_INK_CONTRAST} apart"
    return None


def thumbnail_png(content: bytes, side: int = 96) -> bytes:
    """A grey PNG of an image as the model sees its colours (first frame, EXIF orientation), ``side``
    pixels on its longer side, for people to review: small scans (NumtaDB's are about 30 px) are
    enlarged pixel for pixel, large ones reduced."""
    with Image.open(io.BytesIO(content)) as image:
        gray = Image.fromarray(np.clip(luminance(image), 0, 255).astype(np.uint8))
    scale = side / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    gray = gray.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    return buffer.getvalue()


def luminance(image: Image.Image) -> np.ndarray:
    """The image as featurize sees it before preparation: EXIF orientation applied, then grey."""
    return to_grayscale(ImageOps.exif_transpose(image))


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Luminance as float32 in [0, 255]; transparency is flattened onto white paper."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # I;16B: a big-endian 16-bit TIFF
        array = np.asarray(image, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError("pixel values are not finite (NaN or infinity)")
        span = float(array.max() - array.min()) or 1.0
        return (array - array.min()) * (255.0 / span)
    return np.asarray(image.convert("L"), dtype=np.float32)


def ink_on_white(gray: np.ndarray) -> np.ndarray:
    """Normalise polarity to dark ink on light paper, judged from the border pixels."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 255.0 - gray if float(np.median(border)) < 128.0 else gray


def crop_to_ink(gray: np.ndarray, margin: float = 0.12, threshold: float = 0.5) -> np.ndarray:
    """Crop to the ink's bounding box and pad to a centred square with a white margin.

    Scans of different sizes then show the digit at the same scale. ``threshold`` is the
    fraction of the darkest-to-lightest range below which a pixel counts as ink.
    """
    low, high = float(gray.min()), float(gray.max())
    if high - low < 1.0:
        return gray
    ink = gray < low + threshold * (high - low)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    cropped = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = int(round(max(cropped.shape) * (1.0 + 2.0 * margin)))
    canvas = np.full((side, side), high, dtype=np.float32)
    top, left = (side - cropped.shape[0]) // 2, (side - cropped.shape[1]) // 2
    canvas[top : top + cropped.shape[0], left : left + cropped.shape[1]] = cropped
    return canvas


def stretch_contrast(gray: np.ndarray) -> np.ndarray:
    """Map the darkest pixel to 0 and the lightest to 255 (faint pencil becomes black ink)."""
    low, high = float(gray.min()), float(gray.max())
    if high - low < 1.0:
        return gray
    return (gray - low) * (255.0 / (high - low))


def prepare_image(content: bytes, size: int, crop: bool = True, rng: np.random.Generator | None = None) -> np.ndarray:
    """Bytes -> ``(size, size, 3)`` float32 RGB in [0, 255], ready for a backbone's preprocess.

    With ``rng``, the digit is also randomly distorted (``augment``): a training copy, or one
    of the views averaged at test time.
    """
    with Image.open(io.BytesIO(content)) as image:
        gray = luminance(image)
    return prepare_gray(gray, size, crop, rng)


def prepare_gray(gray: np.ndarray, size: int, crop: bool = True, rng: np.random.Generator | None = None) -> np.ndarray:
    """The preparation itself, from ``luminance``: polarity, contrast, crop, distortion, resize."""
    gray = stretch_contrast(ink_on_white(gray))
    if crop:
        gray = crop_to_ink(gray)
    if rng is not None:
        gray = augment(gray, rng)
    resized = Image.fromarray(gray.astype(np.uint8), mode="L").resize((size, size), Image.BILINEAR)
    return np.repeat(np.asarray(resized, dtype=np.float32)[:, :, None], 3, axis=2)


def view_rng(key: str, view: int) -> np.random.Generator | None:
    """The reproducible random source of one distorted view of an image (view 0: undistorted)."""
    if view == 0:
        return None
    digest = hashlib.sha256(f"{key}#{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible other handwriting of the same digit: small rotation, scale, shear and shift.

    Applied to the prepared (cropped, dark-on-light) grey image; the paper colour fills the
    uncovered border.
    """
    size = gray.shape[0]
    angle = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.88, 1.12)
    shear = rng.uniform(-0.15, 0.15)
    shift = rng.uniform(-0.06, 0.06, size=2) * size
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    # inverse map (output -> input) about the centre, as PIL's affine transform expects
    matrix = np.array([[cos, sin + shear], [-sin, cos]])
    centre = np.array([size / 2, size / 2])
    offset = centre - matrix @ (centre + shift)
    image = Image.fromarray(gray.astype(np.uint8), mode="L")
    warped = image.transform(
        (size, size), Image.AFFINE, (matrix[0, 0], matrix[0, 1], offset[0], matrix[1, 0], matrix[1, 1], offset[1]),
        resample=Image.BILINEAR, fillcolor=int(gray.max()),
    )
    return np.asarray(warped, dtype=np.float32)
