"""Batched, per-sample data augmentation on tensors (on the device that holds the batch).

One call transforms a whole uint8 batch with different random parameters for every image: an affine
warp (rotation, scale, shear, shift) through one `affine_grid`/`grid_sample`, brightness and contrast,
a Gaussian blur of random strength (one grouped convolution with a kernel per image) and random
erasing (a mask built from index comparisons). There is no per-sample Python, so augmentation costs a
few percent of a training step and the loader never starves the model. Parameters come from an
explicit generator, so a run is reproducible from its seed, epoch and rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 6.0
    scale: tuple[float, float] = (0.95, 1.05)
    shear_deg: float = 3.0
    translate: float = 0.05  # fraction of the image size
    brightness: float = 0.1  # additive, in units of full scale
    contrast: float = 0.15  # multiplicative around each image's mean
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    erase_p: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.12)


def _uniform(low: float, high: float, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=device)


def _affine(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    count, device = images.shape[0], images.device
    angle = _uniform(-1.0, 1.0, count, generator, device) * math.radians(config.rotate_deg)
    shear = _uniform(-1.0, 1.0, count, generator, device) * math.radians(config.shear_deg)
    scale = _uniform(*config.scale, count, generator, device)
    shift = _uniform(-1.0, 1.0, 2 * count, generator, device).view(count, 2) * (2 * config.translate)
    # grid_sample maps output coordinates to input coordinates, so this is the inverse transform.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    tan = torch.tan(shear)
    theta = torch.stack(
        [
            torch.stack([cos, -sin + cos * tan, shift[:, 0]], dim=1),
            torch.stack([sin, cos + sin * tan, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _brightness_contrast(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    count, device = images.shape[0], images.device
    contrast = _uniform(1 - config.contrast, 1 + config.contrast, count, generator, device).view(-1, 1, 1, 1)
    brightness = _uniform(-config.brightness, config.brightness, count, generator, device).view(-1, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean + brightness).clamp_(0.0, 1.0)


def _blur(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    count, channels, height, width = images.shape
    device = images.device
    sigma = _uniform(*config.blur_sigma, count, generator, device)
    apply = torch.rand(count, generator=generator, device=device) < config.blur_p
    radius = max(1, math.ceil(2 * config.blur_sigma[1]))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand_as(kernel)
    kernel = torch.where(apply[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(channels, dim=0)  # one kernel per (image, channel) plane
    planes = images.reshape(1, count * channels, height, width)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="replicate")
    planes = F.conv2d(planes, kernel.view(-1, 1, 1, 2 * radius + 1), groups=count * channels)
    planes = F.conv2d(planes, kernel.view(-1, 1, 2 * radius + 1, 1), groups=count * channels)
    return planes.view(count, channels, height, width)


def _erase(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    count, _, height, width = images.shape
    device = images.device
    area = _uniform(*config.erase_area, count, generator, device) * (height * width)
    aspect = torch.exp(_uniform(math.log(0.4), math.log(2.5), count, generator, device))
    box_h = torch.sqrt(area * aspect).clamp(1, height)
    box_w = torch.sqrt(area / aspect).clamp(1, width)
    top = torch.rand(count, generator=generator, device=device) * (height - box_h)
    left = torch.rand(count, generator=generator, device=device) * (width - box_w)
    apply = torch.rand(count, generator=generator, device=device) < config.erase_p
    fill = torch.rand(count, generator=generator, device=device)
    rows = torch.arange(height, device=device, dtype=images.dtype)
    cols = torch.arange(width, device=device, dtype=images.dtype)
    inside_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + box_h)[:, None])
    inside_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + box_w)[:, None])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & apply[:, None, None]
    return torch.where(mask[:, None], fill.view(-1, 1, 1, 1).to(images.dtype), images)


def augment(pixels: torch.Tensor, generator: torch.Generator, config: AugmentConfig | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 in [0, 1], each image with its own random transform."""
    config = config or AugmentConfig()
    images = pixels.to(torch.float32).div_(255.0)
    images = _affine(images, config, generator)
    images = _brightness_contrast(images, config, generator)
    images = _blur(images, config, generator)
    return _erase(images, config, generator)
