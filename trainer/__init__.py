"""The bundled ArSL trainer: distributed training, checkpoints, metrics, export and the predictor.

This package is uploaded as the ModelArts code directory and runs there with only torch, torchvision,
pillow, numpy and (optionally) safetensors; it never imports `arsl_tui`. See `trainer/README.md`.
"""

__version__ = "1.0.0"
