"""The gateway's decode reads each image's header once, yet gives exactly the pixels training's `decode_image` gives.

`arsl_tui.serving.batching` repeats `decode_image`'s steps on the image its size check opened (so the header is
parsed once, not twice); these tests hold the two to the same pixels on every kind of image a client may send,
through both of the gateway's paths (small images on the event loop, big ones on the decode pool).
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from arsl_tui.serving.batching import INLINE_PIXELS, Decoder, InvalidImage, decode, probe
from tests.serving.drift_packages import jpegs
from trainer.preprocess import decode_image


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)


def _rotated_jpeg(orientation: int) -> bytes:
    """A non-square JPEG whose EXIF says it is to be turned before use (as phone cameras write them)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(_noise((96, 48), "RGB", orientation), "JPEG", exif=exif.tobytes())


def _sixteen_bit_png() -> bytes:
    rng = np.random.default_rng(16)
    return _encoded(Image.fromarray(rng.integers(0, 65536, size=(70, 70), dtype=np.uint16)), "PNG")


CASES = {
    "grayscale 64×64 JPEG (the demo's)": lambda: jpegs(3, 1)[0],
    "colour JPEG": lambda: _encoded(_noise((64, 64), "RGB", 1), "JPEG"),
    "colour JPEG, resized": lambda: _encoded(_noise((200, 150), "RGB", 2), "JPEG"),
    "CMYK JPEG": lambda: _encoded(_noise((80, 80), "CMYK", 3), "JPEG"),
    "EXIF orientation 6": lambda: _rotated_jpeg(6),
    "EXIF orientation 3": lambda: _rotated_jpeg(3),
    "EXIF orientation 8": lambda: _rotated_jpeg(8),
    "RGBA PNG": lambda: _encoded(_noise((64, 64), "RGBA", 4), "PNG"),
    "palette PNG": lambda: _encoded(_noise((50, 90), "RGB", 5).convert("P"), "PNG"),
    "16-bit PNG": _sixteen_bit_png,
    "GIF": lambda: _encoded(_noise((64, 64), "L", 6), "GIF"),
    "BMP": lambda: _encoded(_noise((33, 64), "RGB", 7), "BMP"),
    "WEBP": lambda: _encoded(_noise((64, 64), "RGB", 8), "WEBP"),
    "TIFF": lambda: _encoded(_noise((64, 40), "RGB", 9), "TIFF"),
    "big JPEG (decoded on the pool)": lambda: _encoded(_noise((700, 600), "RGB", 10), "JPEG"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_gateway_decodes_every_kind_of_image_to_trainings_pixels(name: str) -> None:
    data = CASES[name]()
    expected = decode_image(data)
    assert expected.shape == (64, 64) and expected.dtype == np.uint8
    np.testing.assert_array_equal(decode(data), expected)
    served = asyncio.run(_decode_served(data))
    np.testing.assert_array_equal(served, expected)


async def _decode_served(data: bytes) -> np.ndarray:
    decoder = Decoder()
    try:
        return await decoder.decode(data)
    finally:
        decoder.close()


def test_the_big_case_takes_the_pool_path() -> None:
    width, height = probe(CASES["big JPEG (decoded on the pool)"]())
    assert width * height > INLINE_PIXELS


def test_an_orientation_is_applied_not_ignored() -> None:
    """The EXIF cases above would pass vacuously if the turn did nothing: it changes the pixels."""
    data = _rotated_jpeg(6)
    with Image.open(io.BytesIO(data)) as opened:
        unturned = np.asarray(opened.convert("L").resize((64, 64), Image.Resampling.BILINEAR))
    assert not np.array_equal(decode(data), unturned)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF87a not really", "not a readable image"),
        (jpegs(3, 1)[0][:400], "corrupt image data"),
    ],
    ids=["empty", "not an image", "truncated JPEG"],
)
def test_bad_bytes_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode(data)
    with pytest.raises(InvalidImage, match=message):
        asyncio.run(_decode_served(data))
