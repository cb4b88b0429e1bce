"""Micro-batching: images that arrive together share one forward pass, run off the event loop.

The event loop decodes each image to 64×64 uint8 pixels (the steps of the training pipeline's
`decode_image`, the header read once; big images are decoded on a small thread pool so they never
stall the loop) and hands the pixels to
`InferenceWorker.submit`, which returns a future. One worker thread takes the first waiting image,
then gathers more until it has `max_batch` of them or the first has waited `max_wait_s`, groups them
by model version, normalises each group exactly as training did and runs one forward pass per group
(on the runtime `arsl_tui.serving.runtime` chose for that model).
It hands all results of a batch back to the loop in one call. A failure inside a forward pass fails
only the requests of that batch (with the error), never the thread.

While the worker is busy, new images queue up and form the next batch at once (their wait is
already over), so batches grow with the load. The worker idles for company only when the smoothed
gap between arrivals says another image is due before the first one's `max_wait_s` is up: at light
load an image is classified at once rather than after a pointless wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from arsl_tui.serving.runtime import ForwardSwitch, Runtime
from trainer.predict import PackageError, Predictor
from trainer.preprocess import normalise, pixels_of

TOP_K = 5
MAX_PIXELS = 4096 * 4096
"""Larger images are refused before decoding (a small compressed body can expand to gigabytes)."""
FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")
"""The formats a client may send (MPO: the JPEG variant phone cameras write). Pillow knows many more, some of
them parsed by large amounts of rarely exercised code (or, for EPS, an external interpreter): bytes in any other
format are refused from their header, before a decoder runs."""
INLINE_BYTES = 64 * 1024
INLINE_PIXELS = 512 * 512
"""Images at most this big are decoded on the event loop (well under a millisecond); others on the pool."""

Scores = list[tuple[int, float]]
"""Top-k (class index, probability) pairs of one image, most probable first."""


class InvalidImage(ValueError):
    """Bytes that cannot be this model's input; the message says why (→ 422)."""


class Overloaded(Exception):
    """Too many images wait for inference already (→ 503 with Retry-After)."""


def default_threads() -> int:
    """Half the cores, at least one: the other half serves HTTP (and, on a small box, everything else)."""
    return max(1, (os.cpu_count() or 2) // 2)


def configure_torch(threads: int) -> int:
    """Set torch's intra-op threads (0 = default_threads()) and a single inter-op thread; returns the count."""
    count = threads or default_threads()
    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel work
        torch.set_num_interop_threads(1)
    return count


@dataclass
class LoadedModel:
    """One model version ready to serve."""

    version: str
    predictor: Predictor
    model_dir: Path
    loaded_at: float = field(default_factory=time.time)
    switch: ForwardSwitch | None = None
    """The forward pass it serves with (see `arsl_tui.serving.runtime`); None: the predictor's own."""

    @property
    def classes(self) -> tuple[str, ...]:
        return self.predictor.classes

    @property
    def runtime(self) -> str:
        return self.switch.runtime if self.switch is not None else "torch"

    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) normalised inputs → (B, classes) softmax probabilities, on the chosen runtime."""
        if self.switch is None or self.switch.runtime == "torch":
            return self.predictor.probabilities(inputs)  # looked up per call, so a patched method takes effect
        return self.switch.forward(inputs)

    def describe(self) -> dict[str, Any]:
        config = self.predictor.config
        return {
            "version": self.version,
            "classes": list(self.classes),
            "architecture": config.get("architecture"),
            "input": config.get("input"),
            "normalisation": config.get("normalisation"),
            "manifest_id": config.get("manifest_id"),
            "training_job_id": config.get("training_job_id"),
            "weights_sha256": config.get("weights_sha256"),
            "runtime": self.runtime,
            "runtime_settled": self.switch is None or self.switch.settled.is_set(),
            "metrics": _headline(config.get("metrics")),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
        }


def _headline(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        return {}
    return {name: value for name, value in metrics.items() if isinstance(value, int | float | str)}


def load_model(version: str, model_dir: Path, runtime: Runtime = "auto") -> LoadedModel:
    """Load a package and run one forward pass, so its first request pays no warm-up.

    It serves with torch at once; with `runtime` "auto" or "onnxruntime" a background thread converts it and
    switches to ONNX Runtime once that agrees with torch (`arsl_tui.serving.runtime`).
    """
    predictor = Predictor.load(model_dir)
    batch = normalise(torch.zeros((2, 1, 64, 64), dtype=torch.uint8), predictor.mean, predictor.std)
    predictor.probabilities(batch)
    switch = ForwardSwitch(predictor)
    switch.convert_in_background(predictor, runtime, torch.get_num_threads(), version)
    return LoadedModel(version=version, predictor=predictor, model_dir=model_dir, switch=switch)


# --- decoding -------------------------------------------------------------------------------------


@functools.cache
def _open_formats() -> tuple[str, ...]:
    """FORMATS as Pillow knows them: every plugin registered (Image.open's `formats` needs them loaded)."""
    Image.init()
    return tuple(name for name in FORMATS if name in Image.OPEN)


def _open(data: bytes) -> Image.Image:
    """The image's header read (format, size), pixels not decoded yet; InvalidImage naming the problem otherwise.

    The caller closes it. The checks come before any pixel is decoded: an allowed format, at least one pixel,
    at most MAX_PIXELS of them."""
    if not data:
        raise InvalidImage("empty: the body holds no image bytes")
    try:
        opened = Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: the header declares gigapixels
        raise InvalidImage(
            f"the image declares far more pixels than decoded images may have ({MAX_PIXELS}): a decompression bomb?"
        ) from None
    except Exception as error:  # Pillow raises many types for bytes that are no image
        raise InvalidImage(
            f"not a readable image: no {', '.join(FORMATS)} image in these {len(data)} bytes ({type(error).__name__})"
        ) from None
    width, height = opened.size
    if width < 1 or height < 1:
        opened.close()
        raise InvalidImage(f"the image is {width}×{height} pixels: it has no pixels")
    if width * height > MAX_PIXELS:
        opened.close()
        raise InvalidImage(f"the image is {width}×{height} pixels; at most {MAX_PIXELS} pixels are accepted")
    return opened


def probe(data: bytes) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    with _open(data) as opened:
        return opened.size


def decode(data: bytes) -> np.ndarray:
    """Bytes → (64, 64) uint8 pixels, as in training; InvalidImage naming the problem otherwise."""
    return _pixels(_open(data))


def _pixels(opened: Image.Image) -> np.ndarray:
    """An opened image → (64, 64) uint8 pixels, as in training (`pixels_of`); closes the image.

    The header was read once, by `_open`'s checks; `decode_image` would read it again (a third of a small
    image's decode). Failures become InvalidImage with `decode_image`'s words."""
    with opened:
        try:
            return pixels_of(opened)
        except (UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise InvalidImage(f"not a readable image ({error})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:  # decode_image's "corrupt" family
            raise InvalidImage(f"corrupt image data ({error})") from None
        except Exception as error:  # a decoder bug or an exotic file must fail this request only
            raise InvalidImage(f"cannot decode the image ({type(error).__name__}: {error})") from None


class Decoder:
    """Decodes small images on the calling (event-loop) thread and big ones on a small pool."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arsl-decode")

    async def decode(self, data: bytes) -> np.ndarray:
        opened = _open(data)
        width, height = opened.size
        if len(data) <= INLINE_BYTES and width * height <= INLINE_PIXELS:
            return _pixels(opened)
        # The pool thread owns (and closes) the image from here: a cancelled request cannot close it under it.
        return await asyncio.get_running_loop().run_in_executor(self._pool, _pixels, opened)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# --- the inference worker -------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    model: LoadedModel
    pixels: np.ndarray
    future: asyncio.Future[Scores]
    enqueued: float


_STOP = object()
BatchObserver = Callable[[str, int, float], None]
"""Called on the event loop after each forward pass: (version, images, seconds)."""


class InferenceWorker:
    def __init__(
        self, *, max_batch: int, max_wait_s: float, max_queue: int, on_batch: BatchObserver | None = None
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._last_arrival: float | None = None
        self._gap_s: float | None = None
        """Smoothed time between arrivals (worker thread only)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="arsl-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, model: LoadedModel, pixels: np.ndarray) -> asyncio.Future[Scores]:
        """Queue one image for `model`; the future gets its top-k scores. Call on the event loop."""
        if self._loop is None:
            raise RuntimeError("the inference worker is not started")
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"{self.max_queue} images are waiting for inference already")
        future: asyncio.Future[Scores] = self._loop.create_future()
        self._queue.put(_Item(model, pixels, future, time.monotonic()))
        return future

    def submit_many(self, model: LoadedModel, images: Sequence[np.ndarray]) -> list[asyncio.Future[Scores]]:
        if self._queue.qsize() + len(images) > self.max_queue:
            raise Overloaded(f"{self.max_queue} images are waiting for inference already")
        return [self.submit(model, pixels) for pixels in images]

    # --- the thread -------------------------------------------------------------------------------

    def _arrived(self, item: _Item) -> None:
        if self._last_arrival is not None:
            gap = max(0.0, item.enqueued - self._last_arrival)
            self._gap_s = gap if self._gap_s is None else 0.8 * self._gap_s + 0.2 * gap
        self._last_arrival = item.enqueued

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            self._arrived(first)
            batch: list[_Item] = [first]
            deadline = first.enqueued + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    # Wait for company only when, at the recent arrival rate, it is due within the window:
                    # at light load an image is classified at once instead of idling for max_wait.
                    if remaining <= 0 or self._gap_s is None or self._gap_s > remaining:
                        break
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stopping = True
                    break
                self._arrived(item)
                batch.append(item)
            groups: dict[int, list[_Item]] = {}
            for item in batch:
                groups.setdefault(id(item.model), []).append(item)
            for group in groups.values():
                self._infer(group)

    def _infer(self, group: list[_Item]) -> None:
        model = group[0].model
        started = time.perf_counter()
        results: list[Scores] = []
        error: BaseException | None = None
        try:
            pixels = torch.from_numpy(np.stack([item.pixels for item in group]))
            inputs = normalise(pixels, model.predictor.mean, model.predictor.std).unsqueeze(1)
            probabilities = model.probabilities(inputs)
            k = min(TOP_K, probabilities.shape[1])
            values, indices = probabilities.topk(k, dim=1)
            results = [
                list(zip(row_indices, row_values, strict=True))
                for row_indices, row_values in zip(indices.tolist(), values.tolist(), strict=True)
            ]
        except Exception as failure:  # the requests of this batch fail; the thread and other batches go on
            error = failure
        seconds = time.perf_counter() - started
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked: nobody waits any more
            self._loop.call_soon_threadsafe(self._deliver, group, results, error, seconds)

    def _deliver(self, group: list[_Item], results: list[Scores], error: BaseException | None, seconds: float) -> None:
        for index, item in enumerate(group):
            if item.future.done():  # the client went away
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(results[index])
        if self._on_batch is not None and error is None:
            self._on_batch(group[0].model.version, len(group), seconds)


__all__ = [
    "MAX_PIXELS",
    "TOP_K",
    "Decoder",
    "InferenceWorker",
    "InvalidImage",
    "LoadedModel",
    "Overloaded",
    "PackageError",
    "Scores",
    "configure_torch",
    "decode",
    "default_threads",
    "load_model",
    "probe",
]
