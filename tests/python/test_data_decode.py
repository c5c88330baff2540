"""The libspng fast path of the image reader gives Pillow's pixels, or steps aside."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import files
from edgeseg.errors import DatasetError

pyspng = pytest.importorskip("pyspng", reason="the fast PNG path needs pyspng (edgeseg[data])")


def _pillow(path):
    """The reader with the fast path off: Pillow decodes."""
    im = files._open(str(path), str(path), "image")
    return files._to_rgb(files.apply_orientation(im, files.orientation_of(im)), str(path))


@pytest.mark.parametrize(
    "mode,shape,kw",
    [
        ("RGB", (37, 53, 3), {}),
        ("RGB", (64, 40, 3), {"optimize": True}),
        ("RGBA", (31, 29, 4), {}),
        ("L", (45, 17), {}),
        ("RGB", (33, 47, 3), {"interlace": 1}),
    ],
)
def test_fast_png_path_gives_pillows_pixels(tmp_path, rng, mode, shape, kw):
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(arr, mode).save(p, **kw)
    with Image.open(p) as im:
        fast = files._png_fast(im, str(p))
    assert fast is not None  # the fast path took it
    got = files.read_image(str(p))
    assert np.array_equal(fast, got.rgb) and got.rgb.dtype == np.uint8
    assert np.array_equal(got.rgb, _pillow(p))
    assert got.orientation == 1 and got.raw_size == shape[:2]
    assert np.array_equal(files.read_image(p.read_bytes()).rgb, got.rgb)  # bytes too


def test_fast_png_path_steps_aside(tmp_path, rng):
    arr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cases = {}
    # palette, 16-bit grey, EXIF orientation (rotated by Pillow), tRNS
    cases["p"] = Image.fromarray(arr).convert("P")
    cases["i16"] = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    for name, im in cases.items():
        p = tmp_path / f"{name}.png"
        im.save(p)
        with Image.open(p) as opened:
            assert files._png_fast(opened, str(p)) is None, name
        assert np.array_equal(files.read_image(str(p)).rgb, _pillow(p))
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.png"
    Image.fromarray(arr).save(p, exif=exif)
    got = files.read_image(str(p))
    assert got.orientation == 6 and got.rgb.shape == (30, 20, 3)
    assert np.array_equal(got.rgb, np.rot90(arr, -1))
    p = tmp_path / "t.png"
    Image.fromarray(arr).save(p, transparency=(1, 2, 3))
    with Image.open(p) as opened:
        assert files._png_fast(opened, str(p)) is None
    # a truncated file: Pillow's message names it
    p = tmp_path / "cut.png"
    Image.fromarray(arr).save(p)
    p.write_bytes(p.read_bytes()[:-60])
    with pytest.raises(DatasetError, match=r"cut\.png: cannot read the image"):
        files.read_image(str(p))
