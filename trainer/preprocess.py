"""Image bytes → the model's input, identically in training and in serving.

Every image, whatever its size or mode, becomes 64×64 grayscale: EXIF orientation applied, converted
to "L", resized with an antialiasing bilinear filter when it is not already 64×64. The trainer caches
these uint8 pixels; the predictor applies the same function, so a served image is seen exactly as a
training image was.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SIZE = 64


class ImageDecodeError(ValueError):
    """Bytes that are not a readable image; the message says why."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to a (64, 64) uint8 array."""
    if not data:
        raise ImageDecodeError("empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            if image.mode != "L":
                image = image.convert("L")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"not a readable image ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(f"corrupt image data ({error})") from None


def normalise(pixels: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 pixels (any shape) → float32 (pixels / 255 − mean) / std."""
    return (pixels.to(torch.float32) / 255.0 - mean) / std
