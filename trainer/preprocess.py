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


def pixels_of(opened: Image.Image) -> np.ndarray:
    """An opened image (header read, pixels not yet) → (64, 64) uint8 pixels, read-only: the steps every image
    goes through in training and in serving. Orientation is applied to `opened` itself; Pillow's errors
    propagate for the caller to name."""
    opened.load()
    ImageOps.exif_transpose(opened, in_place=True)
    image = opened if opened.mode == "L" else opened.convert("L")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    # An "L" image of IMAGE_SIZE² bytes: frombuffer skips the array interface's dict and dtype checks.
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to a (64, 64) uint8 array (writable: the trainer stacks and augments them)."""
    if not data:
        raise ImageDecodeError("empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return pixels_of(opened).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"not a readable image ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(f"corrupt image data ({error})") from None


def normalise(pixels: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 pixels (any shape) → float32 (pixels / 255 − mean) / std."""
    return (pixels.to(torch.float32) / 255.0 - mean) / std
