"""Model weights in the safetensors format, which loads without unpickling.

Uses the `safetensors` package when it is installed; otherwise a small reader/writer of the same
format (8-byte little-endian header length, a JSON header of dtype/shape/offsets, raw little-endian
tensor bytes), so the trainer also runs on images without that package and both produce files the
other reads.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_BY_NAME = {name: dtype for dtype, name in _DTYPES.items()}


class WeightsError(ValueError):
    """A weights file that is not valid safetensors; the message names the file and the problem."""


def _encode(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in _DTYPES:
            raise WeightsError(f"tensor {name!r}: dtype {tensor.dtype} is not supported")
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _decode(data: bytes, source: str) -> dict[str, torch.Tensor]:
    if len(data) < 8:
        raise WeightsError(f"{source}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise WeightsError(f"{source}: header length {length} exceeds the file size")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{source}: header is not JSON ({error})") from None
    body = memoryview(data)[8 + length :]
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _BY_NAME[info["dtype"]]
            start, end = (int(value) for value in info["data_offsets"])
            shape = [int(size) for size in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{source}: tensor {name!r} has a malformed header entry") from None
        if not 0 <= start <= end <= len(body):
            raise WeightsError(f"{source}: tensor {name!r} lies outside the file")
        raw = (
            torch.frombuffer(bytearray(body[start:end]), dtype=torch.uint8)
            if end > start
            else torch.empty(0, dtype=torch.uint8)
        )
        tensors[name] = raw.view(dtype).reshape(shape)
    return tensors


def save_weights(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` to `path` atomically (a temporary file renamed into place)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    cpu = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        temporary.write_bytes(_encode(cpu, metadata or {}))
    else:
        save_file(cpu, str(temporary), metadata=metadata)
    os.chmod(temporary, 0o644)  # a package is read by whoever serves it
    os.replace(temporary, path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into CPU tensors (no pickle involved on either path)."""
    path = Path(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        try:
            return _decode(path.read_bytes(), str(path))
        except OSError as error:
            raise WeightsError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        return load_file(str(path))
    except OSError as error:
        raise WeightsError(f"{path}: cannot be read ({error.strerror or error})") from None
    except Exception as error:  # safetensors raises its own SafetensorError for malformed files
        raise WeightsError(f"{path}: not a valid safetensors file ({error})") from None
