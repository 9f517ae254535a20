"""Test photos built from images that installed packages ship (no downloads, no fixture files).

Every function returns an RGB uint8 array of shape (H, W, 3), except the `*_jpeg`
ones, which return encoded bytes. Results are cached: treat the arrays as read-only.

- `astronaut`, `coffee`, `chelsea`: scikit-image's `skimage.data` (one face, no face, a cat).
- `grace_hopper`: matplotlib's sample `grace_hopper.jpg` (one face).
- `composite`: several faces (crops of the astronaut and Grace Hopper) pasted at four
  scales onto a textured background made of the face-less photos (1024×768 by default).
- `exif_rotated_jpeg`: Grace Hopper stored sideways with an EXIF Orientation tag, so the
  *displayed* image (after `PIL.ImageOps.exif_transpose`, see `load_rgb_upright`) is upright.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageFilter, ImageOps

# Where the faces are in the source photos (x1, y1, x2, y2), with a margin of background.
_ASTRONAUT_FACE_CROP = (140, 20, 310, 215)
_GRACE_FACE_CROP = (120, 55, 400, 380)
# EXIF tag 0x0112 (Orientation): 6 = "rotate 90° clockwise to display".
_ORIENTATION = 0x0112


@cache
def astronaut() -> np.ndarray:
    from skimage import data

    return _readonly(data.astronaut())


@cache
def coffee() -> np.ndarray:
    from skimage import data

    return _readonly(data.coffee())


@cache
def chelsea() -> np.ndarray:
    from skimage import data

    return _readonly(data.chelsea())


@cache
def grace_hopper_jpeg() -> bytes:
    """The original JPEG bytes of matplotlib's `grace_hopper.jpg` (512×600)."""
    from matplotlib import cbook

    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as handle:
        return handle.read()


@cache
def grace_hopper() -> np.ndarray:
    return decode_rgb(grace_hopper_jpeg())


@cache
def composite(width: int = 1024, height: int = 768) -> np.ndarray:
    """Faces at four scales (about 40 to 270 px tall) on a textured, face-less background."""
    canvas = _background(width, height)
    astro = Image.fromarray(astronaut()).crop(_ASTRONAUT_FACE_CROP)
    grace = Image.fromarray(grace_hopper()).crop(_GRACE_FACE_CROP)
    # (source, crop height as a fraction of the canvas height, left and top as fractions)
    placements = (
        (grace, 0.50, 0.04, 0.08),
        (astro, 0.34, 0.46, 0.05),
        (grace, 0.17, 0.76, 0.10),
        (astro, 0.12, 0.80, 0.55),
        (grace, 0.09, 0.50, 0.68),
    )
    for source, scale, left, top in placements:
        crop_h = round(height * scale)
        crop_w = round(source.width * crop_h / source.height)
        face = source.resize((crop_w, crop_h), Image.Resampling.LANCZOS)
        canvas.paste(face, (round(width * left), round(height * top)))
    return _readonly(np.asarray(canvas))


@cache
def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """Grace Hopper stored sideways, tagged so that viewers (and `exif_transpose`) show it upright.

    Orientation 6 stores the picture rotated 90° counter-clockwise (viewers rotate it back
    clockwise); orientation 8 stores it rotated clockwise.
    """
    stored_rotation = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    upright = Image.fromarray(grace_hopper())
    stored = upright.transpose(stored_rotation)
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def decode_rgb(encoded: bytes) -> np.ndarray:
    """Decode image bytes as stored (EXIF orientation ignored) into RGB uint8."""
    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB"))


def load_rgb_upright(jpeg_bytes: bytes) -> np.ndarray:
    """Decode image bytes into RGB uint8 as a viewer displays them (EXIF orientation applied)."""
    with Image.open(io.BytesIO(jpeg_bytes)) as image:
        upright = ImageOps.exif_transpose(image)
        return np.asarray(upright.convert("RGB"))


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


# Named photos for parametrised tests: name -> RGB array factory.
PHOTOS = {
    "astronaut": astronaut,
    "coffee": coffee,
    "chelsea": chelsea,
    "grace_hopper": grace_hopper,
    "composite": composite,
    "exif_rotated": lambda: load_rgb_upright(exif_rotated_jpeg()),
}
# The photos in which there is no face to find.
FACELESS = ("coffee", "chelsea")


def _background(width: int, height: int) -> Image.Image:
    """A blurred mosaic of the face-less photos, mirrored so that no seam shows."""
    tiles = []
    for source in (coffee(), chelsea()):
        tile = Image.fromarray(source)
        tiles.append(tile.resize((round(tile.width * 384 / tile.height), 384)))
    canvas = Image.new("RGB", (width, height))
    for row, y in enumerate(range(0, height, 384)):
        x, column = 0, 0
        while x < width:
            tile = tiles[(row + column) % 2]
            if column % 2:
                tile = ImageOps.mirror(tile)
            canvas.paste(tile, (x, y))
            x += tile.width
            column += 1
    return canvas.filter(ImageFilter.GaussianBlur(2))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    array.setflags(write=False)
    return array
