"""Where the local gateway keeps its files under `$ARSL_HOME`: the models it serves and its log. The
gateway control and the serving use cases both name these paths; this module is their one definition."""

from __future__ import annotations

from pathlib import Path

SERVING_DIR = "serving"
MODELS_DIR = "models"
LOG_FILE = "gateway.log"


def serving_dir(home: Path) -> Path:
    return Path(home) / SERVING_DIR


def models_dir(home: Path) -> Path:
    return serving_dir(home) / MODELS_DIR


def log_path(home: Path) -> Path:
    return serving_dir(home) / LOG_FILE
