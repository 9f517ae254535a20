"""Untrusted image bytes → an upright RGB array, with limits checked before decoding."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modelzoo_server.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# What Pillow's decoders raise on broken data (beyond "unidentified image").
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    max_side: int = 16384


def decode_image(data: bytes | bytearray, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode to an upright (EXIF-applied) RGB image or raise a 4xx error saying why."""
    if not data:
        raise InvalidInput("empty image: the request carried no image bytes")
    # Pillow's bomb check is only a warning below 2× its limit: make it an error here.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError as exc:
            raise UnsupportedMediaType(
                f"not a supported image (expected one of {', '.join(FORMATS)})"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"image has too many pixels: {exc}") from exc
        except _DECODE_ERRORS as exc:  # a known format whose header is broken
            raise InvalidInput(f"cannot decode image: {exc}") from exc
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidInput(f"image has no pixels ({width}×{height})")
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            raise PayloadTooLarge(
                f"image is {width}×{height} pixels, over the cap of {limits.max_pixels} pixels "
                f"or {limits.max_side} per side"
            )
        try:
            # Counting frames parses the rest of a GIF/WEBP: a broken one fails here.
            if getattr(image, "n_frames", 1) > 1:
                raise InvalidInput("animated images are not supported: send a single frame")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of upright photos
            return _to_rgb(image)
        except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as exc:
            raise InvalidInput(f"cannot decode {image.format} image: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping everything to white.
        array = np.asarray(image, dtype=np.uint32)
        peak = int(array.max()) or 1
        scaled = (array * 255 // max(peak, 255)).astype(np.uint8) if peak > 255 else array
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def to_array(image: Image.Image) -> np.ndarray:
    """H×W×3 uint8, C-contiguous."""
    return np.asarray(image, dtype=np.uint8)


def encode_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # fast: the PNG is a preview
    return out.getvalue()
