"""The 32 ArSL2018 sign classes; a class's index is its position in sorted order."""

from __future__ import annotations

ARSL_CLASSES: tuple[str, ...] = (
    "ain", "al", "aleff", "bb", "dal", "dha", "dhad", "fa",
    "gaaf", "ghain", "ha", "haa", "jeem", "kaaf", "khaa", "la",
    "laam", "meem", "nun", "ra", "saad", "seen", "sheen", "ta",
    "taa", "thaa", "thal", "toot", "waw", "ya", "yaa", "zay",
)  # fmt: skip

NUM_CLASSES = len(ARSL_CLASSES)
CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(ARSL_CLASSES)}

IMAGE_SIZE = 64
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})

assert list(ARSL_CLASSES) == sorted(ARSL_CLASSES), "class indices are defined by sorted order"


def class_index(name: str) -> int:
    """Index of a class folder name; raises KeyError naming the unknown class."""
    try:
        return CLASS_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown ArSL class {name!r}") from None
