"""Reported losses are plain cross-entropy, whatever loss the optimiser sees; evaluation covers the split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.trainer.conftest import solo_context
from trainer.augment import AugmentConfig
from trainer.data import SplitData
from trainer.engine import Normalisation, evaluate, train_epoch
from trainer.sampler import ExactDistributedBatches

IDENTITY = AugmentConfig(
    rotate_deg=0, scale=(1.0, 1.0), shear_deg=0, translate=0, brightness=0, contrast=0, blur_p=0, erase_p=0
)


def linear_case() -> tuple[nn.Module, SplitData, Normalisation]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 64, 64), dtype=torch.uint8, generator=generator)
    labels = torch.arange(40) % 4
    torch.manual_seed(0)
    linear = nn.Linear(64 * 64, 4)
    with torch.no_grad():
        linear.weight.mul_(5)  # confident logits, where smoothing changes the loss a lot
    model = nn.Sequential(nn.Flatten(), linear)
    return model, SplitData(images=images, labels=labels), Normalisation(0.5, 0.25)


def test_training_loss_is_reported_unsmoothed() -> None:
    model, data, normalisation = linear_case()
    inputs = normalisation.apply(data.images.float() / 255)
    with torch.no_grad():
        logits = model(inputs)
    plain = F.cross_entropy(logits, data.labels).item()
    smoothed = F.cross_entropy(logits, data.labels, label_smoothing=0.4).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay put: the loss is the start loss
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    result = train_epoch(
        model=model,
        data=data,
        sampler=ExactDistributedBatches(40, 16, 1, 0, seed=1),
        epoch=1,
        optimizer=optimizer,
        scheduler=scheduler,
        context=solo_context(),
        normalisation=normalisation,
        augment_config=IDENTITY,
        seed=0,
        amp_dtype=None,
        label_smoothing=0.4,
        log_every=0,
        on_step=None,
    )
    assert result.samples == 40
    assert abs(plain - smoothed) > 0.05
    assert result.loss == pytest.approx(plain, rel=1e-5)
    assert result.accuracy == pytest.approx((logits.argmax(1) == data.labels).float().mean().item())


def test_evaluation_scores_every_sample_and_fills_the_confusion_matrix() -> None:
    model, data, normalisation = linear_case()
    scored = evaluate(
        model=model,
        data=data,
        context=solo_context(),
        normalisation=normalisation,
        num_classes=4,
        batch_size=7,
        amp_dtype=None,
    )
    with torch.no_grad():
        logits = model(normalisation.apply(data.images.float() / 255))
    assert scored.samples == 40 and int(scored.confusion.sum()) == 40
    assert abs(scored.loss - F.cross_entropy(logits, data.labels).item()) < 1e-5
    predicted = logits.argmax(1)
    assert scored.confusion[1].tolist() == torch.bincount(predicted[data.labels == 1], minlength=4).tolist()
    per_class = scored.per_class_accuracy()
    assert per_class[2] == pytest.approx((predicted[data.labels == 2] == 2).float().mean().item())
