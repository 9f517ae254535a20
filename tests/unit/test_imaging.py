"""Image decoding limits on arbitrary bytes (pure): never anything but a typed 4xx."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from modelzoo_server.errors import InvalidInput, ModelZooError, PayloadTooLarge
from modelzoo_server.imaging import ImageLimits, decode_image

pytestmark = pytest.mark.unit


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


SEEDS = [_png(8, 8), _png(4, 4, "RGBA"), _png(5, 3, "L")]
for fmt in ("JPEG", "WEBP", "GIF", "BMP"):
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), "red").save(buffer, format=fmt)
    SEEDS.append(buffer.getvalue())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 200), st.binary(max_size=16), st.booleans())
def test_mutated_images_decode_or_fail_with_a_4xx(seed, position, noise, truncate) -> None:
    position = min(position, len(seed))
    data = seed[:position] if truncate else seed[:position] + noise + seed[position + len(noise) :]
    try:
        image = decode_image(data)
    except ModelZooError as exc:
        assert 400 <= exc.status < 500 and str(exc)
    else:
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


def test_pixel_cap_is_checked_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="over the cap"):
        decode_image(_png(200, 100), ImageLimits(max_pixels=10_000))


def test_side_cap() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_image(_png(300, 2), ImageLimits(max_side=256))


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (4, 4))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 32768)
    out = io.BytesIO()
    image.save(out, format="PNG")
    decoded = decode_image(out.getvalue())
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0))[0] == 127
    assert decoded.getpixel((2, 0)) == (0, 0, 0)


def test_transparent_pixels_become_white() -> None:
    assert decode_image(_png(2, 2, "RGBA")).getpixel((0, 0)) == (255, 255, 255)


def test_empty_body() -> None:
    with pytest.raises(InvalidInput, match="empty image"):
        decode_image(b"")
