"""The forward pass the gateway serves with: ONNX Runtime when it is installed and agrees with torch, else torch.

Measured side by side on the 2-core machine (`bench/serve.py` prints the table on every run): the compact CNN
costs torch (no_grad, channels-last) about 2.0 ms of CPU per image at batch 1 and 1.1–1.5 ms at batches of
8–32; ONNX Runtime's CPU provider about 1.0 ms at every batch size, with probabilities within 1e-8 of torch's.
TorchScript (trace + freeze) gained 10–20 % but is deprecated in this torch; `torch.compile` gained under 10 %
for tens of seconds of compiling; BatchNorm folding and `inference_mode` were within noise. So ONNX Runtime is
the one alternative worth its dependency, and it stays optional: without `onnxruntime` and `onnx` installed
(and on ModelArts, whose package keeps `trainer.predict` unchanged) torch serves.

Converting a model (export to ONNX, build a session, check it) takes about a second per version, so it runs on
a background thread after the model already serves with torch: starting the gateway waits for none of it. The
converted forward replaces torch's only after it gave the same top-1 class and probabilities within
`TOLERANCE` on a probe batch; any failure leaves torch serving and is logged.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from trainer.predict import Predictor
from trainer.preprocess import IMAGE_SIZE, normalise

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnxruntime"]
TOLERANCE = 1e-5
"""The largest difference in any class probability a converted forward may show against torch's."""
PROBE_IMAGES = 16
ONNX_OPSET = 17

_EXPORT_LOCK = threading.Lock()
"""The ONNX exporter keeps its state in module globals: two versions converting at once would corrupt it."""

Forward = Callable[[torch.Tensor], torch.Tensor]
"""(B, 1, 64, 64) normalised float inputs → (B, classes) softmax probabilities."""


class RuntimeUnavailable(Exception):
    """The asked-for runtime cannot serve this model; the message says why."""


def onnxruntime_installed() -> bool:
    """Both halves are there: `onnx` (the exporter writes its format) and `onnxruntime` (runs it)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def torch_forward(predictor: Predictor) -> Forward:
    return predictor.probabilities


class OnnxForward:
    """One ONNX Runtime session on the CPU; called from one thread at a time (the inference worker)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        array = inputs.contiguous().numpy()
        (logits,) = self._session.run(None, {self._input: array})
        return torch.softmax(torch.from_numpy(logits).float(), dim=1)


def onnx_forward(predictor: Predictor, threads: int) -> OnnxForward:
    """Export the predictor's model to ONNX in memory and open a CPU session with `threads` intra-op threads."""
    if not onnxruntime_installed():
        raise RuntimeUnavailable("onnxruntime is not installed (pip install onnxruntime onnx)")
    import onnxruntime

    # A copy: exporting runs the module, and the worker thread keeps serving the original meanwhile.
    model = copy.deepcopy(predictor.model).to(memory_format=torch.contiguous_format).eval()
    with (
        _EXPORT_LOCK,
        tempfile.TemporaryDirectory(prefix="arsl-onnx-") as folder,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        path = Path(folder) / "model.onnx"
        # The TorchScript-based exporter: it needs only `onnx`, and exports this CNN in about a second
        # (the torch.export-based one needs onnxscript too and is slower). Should a torch release drop it,
        # the export fails here and torch keeps serving.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # A trace that read a tensor's value as a Python value may not hold for other inputs: refuse it.
        warnings.simplefilter("error", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (torch.zeros((1, 1, IMAGE_SIZE, IMAGE_SIZE)),),
            path,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        exported = path.read_bytes()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Its pool's threads otherwise spin after each run, waiting for the next: on two cores that is CPU the
    # event loop and the other version's forward need, and a gateway between bursts would not be idle.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    session = onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])
    return OnnxForward(session)


def probe_batch(predictor: Predictor, images: int = PROBE_IMAGES) -> torch.Tensor:
    """Seeded random 64×64 pixels, normalised as the predictor's training was: the same probe on every load."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)
    return normalise(pixels, predictor.mean, predictor.std)


def disagreement(candidate: Forward, reference: Forward, inputs: torch.Tensor) -> str | None:
    """Why `candidate` may not replace `reference` on these inputs, or None when it may."""
    want = reference(inputs)
    got = candidate(inputs)
    if got.shape != want.shape:
        return f"output shape {tuple(got.shape)} is not {tuple(want.shape)}"
    gap = float((got - want).abs().max())
    if gap > TOLERANCE:
        return f"probabilities differ by up to {gap:.2e} (tolerance {TOLERANCE:g})"
    if not torch.equal(got.argmax(dim=1), want.argmax(dim=1)):
        return "the top-1 class differs"
    return None


def converted_forward(predictor: Predictor, runtime: Runtime, threads: int) -> tuple[str, Forward] | None:
    """(name, forward) of the runtime to switch to once it agrees with torch; None when torch stays."""
    if runtime == "torch" or (runtime == "auto" and not onnxruntime_installed()):
        return None
    forward = onnx_forward(predictor, threads)
    reason = disagreement(forward, torch_forward(predictor), probe_batch(predictor))
    if reason is not None:
        raise RuntimeUnavailable(f"onnxruntime does not reproduce torch: {reason}")
    return "onnxruntime", forward


class ForwardSwitch:
    """The forward a model serves with, starting as torch's and replaced once by a converted one.

    `forward` and `runtime` are plain attributes: the worker thread reads `forward` once per batch, and an
    attribute assignment is atomic, so a batch runs wholly on one runtime.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.forward: Forward = torch_forward(predictor)
        self.runtime = "torch"
        self.settled = threading.Event()
        """Set once the choice is final (converted, or torch kept)."""
        self.note = ""
        """Why torch was kept, when a conversion was tried and failed."""

    def convert(self, predictor: Predictor, runtime: Runtime, threads: int, version: str = "") -> None:
        try:
            chosen = converted_forward(predictor, runtime, threads)
        except Exception as error:  # an exporter or runtime failure must leave torch serving, never the gateway down
            self.note = f"{type(error).__name__}: {error}"
            log.warning("model %s keeps the torch forward pass: %s", version, self.note)
        else:
            if chosen is not None:
                self.runtime, self.forward = chosen
                log.info("model %s serves with %s", version, self.runtime)
        finally:
            self.settled.set()

    def convert_in_background(self, predictor: Predictor, runtime: Runtime, threads: int, version: str) -> None:
        if runtime == "torch" or (runtime == "auto" and not onnxruntime_installed()):
            self.settled.set()
            return
        threading.Thread(
            target=self.convert, args=(predictor, runtime, threads, version), name="arsl-convert", daemon=True
        ).start()


__all__ = [
    "TOLERANCE",
    "Forward",
    "ForwardSwitch",
    "OnnxForward",
    "Runtime",
    "RuntimeUnavailable",
    "converted_forward",
    "disagreement",
    "onnx_forward",
    "onnxruntime_installed",
    "probe_batch",
    "torch_forward",
]
