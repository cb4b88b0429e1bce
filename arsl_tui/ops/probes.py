"""Labelled probe traffic: per-version latency and online accuracy where the platform's metrics have neither.

ModelArts' own per-version metrics (Cloud Eye `SYS.ModelArts`, AOM) count calls and failures; they carry
no latency samples to compare and no notion of a right answer, so a judge fed only those is reduced to
error rates. Every answer of this project's services names the model version that gave it
(`model_version`; the label is `label` on the local gateway, `predicted_label` in the model package's
ModelArts API), so the controller sends the labelled probe set (the images `arsl api-test` sends)
through the service as any client would, and each answer is credited to the version that gave it: its
latency, whether it failed, and whether its label was right. `merge_stats` adds that evidence to the
platform's per-version stats before the judge sees them.

The endpoint and the HTTP sender are parameters, so the probes run against any service that answers
with versions (a loopback server in the tests, the local gateway, a ModelArts real-time service).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from arsl_tui.domain.serving import VersionStats

UNATTRIBUTED = ""
"""Where failures go that no version can be named for (a refused or unanswered probe)."""


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe got back: the HTTP status (0 when no answer came) and the JSON body, if any."""

    status: int
    body: Mapping[str, Any] | None
    seconds: float


Sender = Callable[[str, bytes], ProbeAnswer]
"""POST one image to the endpoint; never raises (a transport failure is status 0)."""


@dataclass
class VersionProbes:
    requests: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)
    labelled: int = 0
    correct: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "labelled": self.labelled,
            "correct": self.correct,
            "latency_ms": list(self.latency_ms),
        }


@dataclass(frozen=True)
class ProbeReport:
    """The probes of one round, per answering version."""

    endpoint: str
    sent: int
    seconds: float
    versions: Mapping[str, VersionProbes]

    def version_stats(self, versions: Sequence[str]) -> dict[str, VersionStats]:
        """Per `versions`, the probes as the judge's evidence (a version no probe reached has none)."""
        made: dict[str, VersionStats] = {}
        for version in versions:
            probes = self.versions.get(version, VersionProbes())
            made[version] = VersionStats(
                version=version,
                window_s=self.seconds,
                requests=probes.requests,
                errors=probes.errors,
                latency_ms=tuple(probes.latency_ms),
                latency_samples_total=len(probes.latency_ms),
                feedback=probes.labelled,
                correct=probes.correct,
            )
        return made

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "sent": self.sent,
            "seconds": self.seconds,
            "versions": {version: item.to_json() for version, item in self.versions.items()},
        }


def run_probes(
    endpoint: str,
    samples: Sequence[tuple[bytes, str | None]],
    send: Sender,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeReport:
    """Send each labelled image once; credit each answer to the version it names."""
    began = clock()
    versions: dict[str, VersionProbes] = {}
    for image, label in samples:
        answer = send(endpoint, image)
        body = answer.body if isinstance(answer.body, Mapping) else {}
        version = body.get("model_version")
        tally = versions.setdefault(version if isinstance(version, str) and version else UNATTRIBUTED, VersionProbes())
        tally.requests += 1
        if answer.status == 0 or answer.status >= 500:
            tally.errors += 1  # what counts against a version, as on the gateway: no answer or a 5xx
            continue
        if answer.status >= 400:
            continue  # refused before a model ran (auth, throttling): no evidence about any version
        tally.latency_ms.append(answer.seconds * 1000.0)
        answered = _label(body)
        if label is not None and answered is not None:
            tally.labelled += 1
            tally.correct += int(answered == label)
    return ProbeReport(endpoint=endpoint, sent=len(samples), seconds=max(clock() - began, 0.001), versions=versions)


def _label(body: Mapping[str, Any]) -> str | None:
    """The answered label: `label` (the local gateway) or `predicted_label` (the model package's ModelArts API,
    `trainer/modelarts/layout.py`)."""
    for name in ("label", "predicted_label"):
        value = body.get(name)
        if isinstance(value, str):
            return value
    return None


def merge_stats(platform: Mapping[str, VersionStats], probed: Mapping[str, VersionStats]) -> dict[str, VersionStats]:
    """The platform's stats with the probes' evidence added.

    The platform's counts already include the probes (they went through the service), so requests and
    errors stay the platform's unless the probes saw more; the latency samples are the platform's where it
    has some, else the probes'; the probes' labelled answers add to the feedback.
    """
    merged = dict(platform)
    for version, probes in probed.items():
        base = platform.get(version) or VersionStats(version=version, window_s=probes.window_s, requests=0, errors=0)
        merged[version] = replace(
            base,
            requests=max(base.requests, probes.requests),
            errors=max(base.errors, probes.errors),
            latency_ms=tuple(base.latency_ms) or tuple(probes.latency_ms),
            latency_samples_total=base.latency_samples_total or probes.latency_samples_total,
            feedback=base.feedback + probes.feedback,
            correct=base.correct + probes.correct,
        )
    return merged


def httpx_sender(
    headers: Mapping[str, str], *, form_field: str | None = None, timeout_s: float = 30.0, client: Any = None
) -> Sender:
    """A sender over httpx: the raw image as `image/jpeg`, or a multipart file part named `form_field`.

    With `client` (an `httpx.Client`) every probe of a round shares its connections, so a sample's latency is
    the call's, not a TCP and TLS handshake's; without one each probe connects afresh."""

    def send(url: str, image: bytes) -> ProbeAnswer:
        import httpx

        post = client.post if client is not None else partial(httpx.post, trust_env=False)
        began = time.perf_counter()
        try:
            if form_field is None:
                response = post(
                    url, content=image, headers={**headers, "Content-Type": "image/jpeg"}, timeout=timeout_s
                )
            else:
                response = post(
                    url,
                    files={form_field: ("probe.jpg", image, "image/jpeg")},
                    headers=dict(headers),
                    timeout=timeout_s,
                )
        except httpx.HTTPError:
            return ProbeAnswer(0, None, time.perf_counter() - began)
        seconds = time.perf_counter() - began
        try:
            body = response.json()
        except ValueError:
            body = None
        return ProbeAnswer(response.status_code, body if isinstance(body, Mapping) else None, seconds)

    return send


__all__ = ["ProbeAnswer", "ProbeReport", "Sender", "VersionProbes", "httpx_sender", "merge_stats", "run_probes"]
