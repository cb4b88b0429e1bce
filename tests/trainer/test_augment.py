"""Batched augmentation: per-sample parameters, reproducible, identity when switched off."""

from __future__ import annotations

import torch

from trainer.augment import AugmentConfig, augment

OFF = AugmentConfig(
    rotate_deg=0, scale=(1.0, 1.0), shear_deg=0, translate=0, brightness=0, contrast=0, blur_p=0, erase_p=0
)


def batch_of_one_image(count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 1, 64, 64), dtype=torch.uint8, generator=generator)
    return image.repeat(count, 1, 1, 1)


def test_switched_off_it_only_scales_to_unit_range() -> None:
    pixels = batch_of_one_image(4)
    out = augment(pixels, torch.Generator().manual_seed(1), OFF)
    assert out.dtype == torch.float32 and out.shape == (4, 1, 64, 64)
    torch.testing.assert_close(out, pixels.float() / 255, atol=1e-4, rtol=0)


def test_each_image_gets_its_own_transform() -> None:
    out = augment(batch_of_one_image(8), torch.Generator().manual_seed(2))
    assert out.min() >= 0 and out.max() <= 1
    differences = [(out[0] - out[index]).abs().mean().item() for index in range(1, 8)]
    assert min(differences) > 0.01, "copies of one image must come out differently"


def test_same_generator_seed_same_result() -> None:
    pixels = batch_of_one_image(6)
    first = augment(pixels, torch.Generator().manual_seed(3))
    second = augment(pixels, torch.Generator().manual_seed(3))
    third = augment(pixels, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_blur_only_smooths_and_erase_only_fills_a_box() -> None:
    pixels = batch_of_one_image(16)
    blurred = augment(pixels, torch.Generator().manual_seed(5), AugmentConfig(**{**OFF.__dict__, "blur_p": 1.0}))
    roughness = lambda images: (images[..., 1:] - images[..., :-1]).abs().mean().item()  # noqa: E731
    assert roughness(blurred) < 0.7 * roughness(pixels.float() / 255)
    erased = augment(pixels, torch.Generator().manual_seed(6), AugmentConfig(**{**OFF.__dict__, "erase_p": 1.0}))
    changed = ((erased - pixels.float() / 255).abs() > 1e-3).flatten(1)
    fractions = changed.float().mean(dim=1)
    assert bool((fractions > 0).all()) and bool((fractions < 0.2).all())
