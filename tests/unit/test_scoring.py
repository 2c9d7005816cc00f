import io

from PIL import Image

from numtaflow.scoring import describe, image_files, scorable, top_digits
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
    files = image_files([str(folder)])
    assert [p.name for p in files] == ["blank.png", "good.png", "grey16.png", "notes.png", "truncated.png"]
    accepted, refused = scorable(files, 4096 * 4096)
    assert sorted(path.rsplit("/", 1)[-1] for path, _ in accepted) == ["good.png", "grey16.png"]
    reasons = {item.path.rsplit("/", 1)[-1]: item.reason for item in refused}
    assert reasons["notes.png"] == "not an image (unrecognised format)"
    assert "truncated" in reasons["truncated.png"] and reasons["blank.png"].startswith("holds no digit")
    assert scorable([tmp_path / "missing.png"], 100)[1][0].reason.startswith("cannot read")


def _png(image, ink=False):
    if ink:
        from PIL import ImageDraw

        ImageDraw.Draw(image).line((5, 5, 25, 25), fill=40000, width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
