"""/metrics: Prometheus counters fed by the services (as their ``Observer``) and the outbox read at each scrape.

prometheus-client does the exposition format, label escaping and histogram arithmetic, which a hand-written
endpoint would get subtly wrong; each bot has its own registry, so two in one test process never mix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# SMTP transactions take tens of milliseconds on a LAN and seconds on a slow relay.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Outbox(Collector):
    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mailbot_outbox_letters", "Letters in the outbox, by delivery state",
                                   labels=["state"])
        try:
            states = self.read()
        except Exception:  # noqa: BLE001  (a scrape must answer even when the database does not)
            states = {}
        for state, count in sorted(states.items()):
            family.add_metric([state], count)
        yield family


class Metrics:
    """An ``Observer`` (mailbot.services.observe) that counts for /metrics."""

    def __init__(self, outbox_by_state: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("mailbot_messages", "Inbound messages taken in, by the chain's verdict",
                                ["verdict"], registry=self.registry)
        self.letters = Counter("mailbot_letters", "Letters by what became of each attempt (sent, deferred, failed)",
                               ["state"], registry=self.registry)
        for state in ("sent", "deferred", "failed"):
            self.letters.labels(state)
        self.latency = Histogram("mailbot_delivery_seconds", "How long the SMTP server took to accept a letter",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.fetch_errors = Counter("mailbot_fetch_errors", "Failed reads of the mailbox (sign-in refused, or "
                                    "anything else)", ["kind"], registry=self.registry)
        for kind in ("sign_in", "other"):
            self.fetch_errors.labels(kind)
        self.registry.register(_Outbox(outbox_by_state))

    def message(self, verdict: str) -> None:
        self.messages.labels(verdict).inc()

    def letter(self, state: str, seconds: float | None = None) -> None:
        self.letters.labels(state).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def fetch_failed(self, auth: bool) -> None:
        self.fetch_errors.labels("sign_in" if auth else "other").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
