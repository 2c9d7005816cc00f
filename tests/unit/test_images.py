import hashlib
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from numtaflow.images import crop_to_ink, ink_on_white, inspect_image, prepare_image
from numtaflow.vocabulary import MIN_IMAGE_SIDE, MIN_INK_CONTRAST


def encode(image, fmt="PNG"):
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def digit(mode="L", size=(28, 28), ink=0, paper=255):
    image = Image.new("L", size, paper)
    image.paste(ink, (size[0] // 3, size[1] // 4, size[0] // 2, 3 * size[1] // 4))
    return image.convert(mode)


def test_inspect_reports_size_and_mode():
    info = inspect_image(encode(digit(size=(40, 30))), max_pixels=10_000)
    assert (info.width, info.height, info.mode, info.error) == (40, 30, "L", None)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"filename,digit\n", "not an image"),
        (encode(digit())[:60], "cannot decode"),
    ],
)
def test_inspect_explains_bad_files(content, message):
    assert message in inspect_image(content, 10_000).error


def test_inspect_refuses_decompression_bombs_before_decoding():
    huge = encode(Image.new("1", (5000, 5000), 1))  # a few KB compressed, 25 Mpx decoded
    assert len(huge) < 100_000
    info = inspect_image(huge, max_pixels=1_000_000)
    assert info.error == "image too large: 5000x5000 > 1000000 pixels"
    # featurize pads the ink to a square of the longer side: a 20000x10 strip would need 20000x20000
    strip = encode(digit(size=(20_000, 10)))
    assert inspect_image(strip, 1_000_000).error == (
        "image too large: 20000x10 (prepared as a 20000x20000 square) > 1000000 pixels")


def float_tiff(value):
    array = np.full((20, 20), 100.0, dtype=np.float32)
    array[5:15, 8:12] = value
    return encode(Image.fromarray(array, mode="F"), "TIFF")


@pytest.mark.parametrize(
    "content, message",
    [
        (encode(Image.new("LAB", (20, 20)), "TIFF"), "cannot prepare: conversion from LAB to RGB not supported"),
        (float_tiff(np.nan), "cannot prepare: pixel values are not finite (NaN or infinity)"),
    ],
)
def test_inspect_runs_featurize_preparation_and_names_its_failure(content, message):
    """Files that decode but that prepare_image cannot turn into a network input fail validation."""
    with pytest.raises((ValueError, IndexError)):
        prepare_image(content, 32)
    assert inspect_image(content, 10_000).error == message


def test_inspect_records_content_hash_frames_and_exclusions():
    content = encode(digit())
    info = inspect_image(content, 10_000)
    assert (info.sha256, info.frames, info.excluded) == (hashlib.sha256(content).hexdigest(), 1, None)
    out = io.BytesIO()
    digit().save(out, format="GIF", save_all=True, append_images=[Image.new("L", (28, 28), 0)])
    gif = inspect_image(out.getvalue(), 10_000)
    assert (gif.frames, gif.excluded, gif.error) == (2, None, None)
    np.testing.assert_array_equal(prepare_image(out.getvalue(), 32), prepare_image(encode(digit()), 32))  # frame 1
    assert inspect_image(encode(Image.new("RGB", (40, 30), (200, 10, 10))), 10_000).excluded == (
        f"no ink: grey levels 67 to 67, fewer than {MIN_INK_CONTRAST} apart")
    faint = digit(ink=255 - MIN_INK_CONTRAST + 1, paper=255)
    assert inspect_image(encode(faint), 10_000).excluded.startswith("no ink")
    assert inspect_image(encode(digit(ink=255 - MIN_INK_CONTRAST)), 10_000).excluded is None
    assert inspect_image(encode(digit(size=(30, MIN_IMAGE_SIDE - 1))), 10_000).excluded == (
        f"too small: 30x{MIN_IMAGE_SIDE - 1} < {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    assert inspect_image(encode(Image.new("L", (1, 1))), 10_000).excluded.startswith("too small: 1x1")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "I;16", "LA"])
@pytest.mark.parametrize("size", [(28, 28), (180, 180), (45, 30)])
def test_prepare_accepts_any_mode_and_size(mode, size):
    array = prepare_image(encode(digit(mode=mode, size=size)), 64)
    assert array.shape == (64, 64, 3)
    assert array.dtype == np.float32
    assert 0.0 <= array.min() < 100.0 and array.max() > 200.0  # dark ink on light paper


def test_light_ink_on_dark_paper_is_inverted():
    light_on_dark = prepare_image(encode(digit(ink=255, paper=0)), 32)
    dark_on_light = prepare_image(encode(digit(ink=0, paper=255)), 32)
    np.testing.assert_allclose(light_on_dark, dark_on_light)


def test_crop_to_ink_centres_the_digit_in_a_square():
    gray = np.full((40, 100), 255.0, dtype=np.float32)
    gray[10:20, 70:80] = 0.0
    cropped = crop_to_ink(gray, margin=0.5)
    assert cropped.shape == (20, 20)
    assert cropped[10, 10] == 0.0 and cropped[0, 0] == 255.0
    assert ink_on_white(255.0 - gray)[15, 75] == 0.0


def test_augmented_view_keeps_size_and_paper_and_is_reproducible():
    from numtaflow.images import augment, view_rng

    assert view_rng("k", 0) is None
    gray = np.full((40, 40), 255.0, dtype=np.float32)
    gray[10:30, 18:22] = 0.0
    first, second = augment(gray, view_rng("k", 1)), augment(gray, view_rng("k", 1))
    np.testing.assert_array_equal(first, second)
    assert first.shape == gray.shape and first[0, 0] == 255.0 and first.min() < 50
    assert not np.array_equal(first, augment(gray, view_rng("k", 2)))


def test_a_damaged_file_is_reported_whatever_pillow_raises():
    """Pillow's decoders raise TypeError, IndexError, struct.error... on cut-off multi-page files:
    each is one file's reason, never an error that stops the step."""
    pages = [digit(ink=ink) for ink in (0, 40)]
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    whole = out.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of the corrupt tags it skips
        reasons = [inspect_image(whole[:cut], 10_000).error for cut in range(8, len(whole))]  # none raises
    assert all(reason is None or not reason.endswith(": ") for reason in reasons)  # each says what failed
    assert any(reason and reason.startswith("cannot decode") for reason in reasons)


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16B", ">u2")])
def test_sixteen_bit_scans_keep_their_grey_levels_in_either_byte_order(mode, dtype):
    pixels = np.full((30, 30), 4000, dtype=dtype)
    pixels[8:22, 12:16] = 500  # 12-bit scanner levels: far above 255
    info = inspect_image(encode(Image.frombytes(mode, (30, 30), pixels.tobytes()), "TIFF"), 10_000)
    assert (info.mode, info.error, info.excluded) == (mode, None, None)
