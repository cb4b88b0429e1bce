"""Labelled traffic for `arsl pipeline run --demo`: clients that send images to the gateway and the true
label of each back as feedback, so the canary's judge has error rates, latencies and an online accuracy
to judge.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.config import Settings

DEMO_TRAFFIC_IMAGES = 96
"""Labelled images the demo clients cycle through."""

_UNIT_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


def demo_pace_s(settings: Settings, clients: int) -> float:
    """Seconds between two samples of one demo client, to stay under the gateway's per-app call limit.

    Each sample is two calls (predict, feedback). The gateway process reads its limits from the config
    and environment, not from the demo's derived settings, so the traffic adapts to them instead.
    """
    gateway = settings.gateway
    calls_per_s = 0.8 * gateway.app_call_limit / _UNIT_S[gateway.time_unit]
    return clients * 2 / calls_per_s


@dataclass
class DemoTraffic:
    """Clients that predict labelled images and send each true label back as feedback."""

    endpoint: str
    key: str
    samples: list[tuple[bytes, str | None]]
    pace_s: float = 0.0
    """Seconds between two samples of one client."""
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, clients: int = 2) -> None:
        for number in range(clients):
            thread = threading.Thread(target=self._run, args=(number,), name=f"demo-client-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, number: int) -> None:
        import httpx

        from arsl_tui.serving.auth import HEADER

        index = number
        with httpx.Client(base_url=self.endpoint, trust_env=False, timeout=30, headers={HEADER: self.key}) as client:
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


def start_demo_traffic(settings: Settings, endpoint: str, *, key_name: str, seed: int, clients: int = 2) -> DemoTraffic:
    """Create a gateway key named `key_name` and start `clients` clients on images rendered with `seed`."""
    from arsl_tui.ops import serving

    key = serving.create_key(settings, key_name)
    traffic = DemoTraffic(
        endpoint=endpoint,
        key=key,
        samples=serving.synthetic_images(DEMO_TRAFFIC_IMAGES, seed=seed),
        pace_s=demo_pace_s(settings, clients),
    )
    traffic.start(clients)
    return traffic


__all__ = ["DEMO_TRAFFIC_IMAGES", "DemoTraffic", "demo_pace_s", "start_demo_traffic"]
