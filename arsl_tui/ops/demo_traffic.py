"""Labelled traffic for `arsl pipeline run --demo`: clients that send images to the gateway and the true
label of each back as feedback, so the canary's judge has error rates, latencies and an online accuracy
to judge. On a cloud service (`ServiceDemoTraffic`) the clients call the service's inference address as
any client would, so the platform's own per-version call counts have traffic to count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.config import Settings

DEMO_TRAFFIC_IMAGES = 96
"""Labelled images the demo clients cycle through."""

_UNIT_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


DEMO_CLIENTS = 3
"""Demo client apps, each with its own key: the gateway limits calls per app, so three apps send three times
what one may, and a 10-second canary window holds about 60 samples per version at a 50 % split."""


def demo_pace_s(settings: Settings, clients: int) -> float:
    """Seconds between two samples of one demo client (an app with its own key), to stay under the gateway's
    per-app call limit and, all clients together, its per-API limit.

    Each sample is two calls (predict, feedback). The gateway process reads its limits from the config
    and environment, not from the demo's derived settings, so the traffic adapts to them instead.
    """
    gateway = settings.gateway
    unit_s = _UNIT_S[gateway.time_unit]
    app_calls_per_s = 0.8 * gateway.app_call_limit / unit_s
    api_calls_per_s = 0.8 * gateway.api_call_limit / unit_s
    return max(2 / app_calls_per_s, clients * 2 / api_calls_per_s)


@dataclass
class DemoTraffic:
    """Clients that predict labelled images and send each true label back as feedback."""

    endpoint: str
    keys: list[str]
    """One key a client: each client is an app of its own."""
    samples: list[tuple[bytes, str | None]]
    pace_s: float = 0.0
    """Seconds between two samples of one client."""
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for number in range(len(self.keys)):
            thread = threading.Thread(target=self._run, args=(number,), name=f"demo-client-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, number: int) -> None:
        import httpx

        from arsl_tui.serving.auth import HEADER

        index = number
        headers = {HEADER: self.keys[number]}
        with httpx.Client(base_url=self.endpoint, trust_env=False, timeout=30, headers=headers) as client:
            while not self.stop.is_set():
                image, label = self.samples[index % len(self.samples)]
                index += len(self.threads) or 1
                try:
                    response = client.post("/v1/predict", content=image, headers={"Content-Type": "image/jpeg"})
                    if response.status_code == 200 and label is not None:
                        client.post("/v1/feedback", json={"request_id": response.json()["request_id"], "label": label})
                except (httpx.HTTPError, ValueError, KeyError):
                    response = None
                with self.lock:
                    if response is not None and response.status_code == 200:
                        self.sent += 1
                    else:
                        self.failed += 1
                if response is None or response.status_code != 200:
                    self.stop.wait(max(0.2, self.pace_s))  # the gateway is busy or restarting: do not spin on it
                elif self.pace_s:
                    self.stop.wait(self.pace_s)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


SERVICE_PACE_S = 0.25
"""Seconds between two samples of one client of a cloud service: a few calls a second, far under ModelArts'
default limit of 100 a second per service, enough for Cloud Eye's per-version call counts."""
SERVICE_FORM_FIELD = "images"
"""The model package's ModelArts API takes the image as this multipart file part (`trainer/modelarts`)."""


@dataclass
class ServiceDemoTraffic:
    """Clients of a cloud service's inference address, found through `resolve` once the service has one.

    They send images as any client does: a POST of the image as a multipart file part to the service's
    address, with the app code in `X-Apig-AppCode` where the service uses app authentication ("Accessing a
    Real-Time Service Through App Authentication", inference-modelarts-0025,
    https://support.huaweicloud.com/intl/en-us/usermanual-standard-modelarts/inference-modelarts-0025.html;
    the request body is the model's own API, "How Do I Fill in the Request Header and Request Body ...",
    modelarts_05_3136). There is no feedback call on such a service: the canary's labelled probes measure
    accuracy.
    """

    resolve: Callable[[], str | None]
    key: str
    samples: list[tuple[bytes, str | None]]
    pace_s: float = SERVICE_PACE_S
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _endpoint: str | None = None

    def endpoint(self) -> str | None:
        with self.lock:
            if self._endpoint:
                return self._endpoint
        found = self.resolve()
        with self.lock:
            self._endpoint = found or None
        return found or None

    def start(self, clients: int = 2) -> None:
        for number in range(clients):
            thread = threading.Thread(target=self._run, args=(number,), name=f"demo-client-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, number: int) -> None:
        import httpx

        from arsl_tui.serving.auth import HEADER

        index = number
        headers = {HEADER: self.key} if self.key else {}
        with httpx.Client(trust_env=False, timeout=30, headers=headers) as client:
            while not self.stop.is_set():
                url = self.endpoint()
                if not url:
                    self.stop.wait(max(1.0, self.pace_s))  # not deployed yet: the canary is creating the service
                    continue
                image, _label = self.samples[index % len(self.samples)]
                index += len(self.threads) or 1
                try:
                    status = client.post(url, files={SERVICE_FORM_FIELD: ("demo.jpg", image, "image/jpeg")}).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    if status == 200:
                        self.sent += 1
                    else:
                        self.failed += 1
                self.stop.wait(self.pace_s if status == 200 else max(0.5, self.pace_s))

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def start_service_traffic(
    resolve: Callable[[], str | None], key: str, *, seed: int, clients: int = 2
) -> ServiceDemoTraffic:
    """Start `clients` clients of the service whose inference address `resolve` returns (None until it has one)."""
    from arsl_tui.ops import serving

    traffic = ServiceDemoTraffic(
        resolve=resolve, key=key, samples=serving.synthetic_images(DEMO_TRAFFIC_IMAGES, seed=seed)
    )
    traffic.start(clients)
    return traffic


def start_demo_traffic(
    settings: Settings, endpoint: str, *, key_name: str, seed: int, clients: int = DEMO_CLIENTS
) -> DemoTraffic:
    """Create `clients` gateway keys named `key_name-N` and start one client on each, on images rendered with
    `seed`."""
    from arsl_tui.ops import serving

    traffic = DemoTraffic(
        endpoint=endpoint,
        keys=[serving.create_key(settings, f"{key_name}-{number + 1}") for number in range(clients)],
        samples=serving.synthetic_images(DEMO_TRAFFIC_IMAGES, seed=seed),
        pace_s=demo_pace_s(settings, clients),
    )
    traffic.start()
    return traffic


__all__ = [
    "DEMO_CLIENTS",
    "DEMO_TRAFFIC_IMAGES",
    "SERVICE_PACE_S",
    "DemoTraffic",
    "ServiceDemoTraffic",
    "demo_pace_s",
    "start_demo_traffic",
    "start_service_traffic",
]
