"""The gateway's Prometheus metrics (text exposition format 0.0.4, served on the management listener).

Conventions (prometheus.io/docs/practices/naming): prefix ``dcr_gateway_``, counters end ``_total``, durations
are ``_seconds`` histograms, one ``dcr_gateway_build_info{version}`` gauge at 1. Every label value is from a fixed
set (operations, outcomes, route classes, RFC 7591 / RFC 7592 / RFC 6749 error codes, limit kinds) or a
configured issuer: nothing a request chooses reaches a label.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import isnan

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

PREFIX = "dcr_gateway"

REGISTRATION_OPERATIONS = ("register", "read", "update", "delete")
"""RFC 7591 section 3 registration and RFC 7592 sections 2.1-2.3 read, update, delete."""

ERROR_CODES = frozenset(
    {
        # RFC 7591 section 3.2.2
        "invalid_redirect_uri",
        "invalid_client_metadata",
        "invalid_software_statement",
        "unapproved_software_statement",
        # RFC 6750 section 3.1 (RFC 7592 section 2: the registration access token)
        "invalid_token",
        "invalid_request",
        "insufficient_scope",
        # RFC 6749 codes the gateway answers with (rate limits, quota, provider trouble)
        "access_denied",
        "temporarily_unavailable",
        "server_error",
        "invalid_client",
        "invalid_target",
        "not_found",
    }
)
"""Error codes used as label values; anything else is counted as ``other``."""

ROUTE_CLASSES = (
    "authorization",
    "par",
    "token",
    "revocation",
    "discovery",
    "registration",
    "client_configuration",
    "health",
    "proxied",
    "not_found",
    "other",
)
"""What a front-door request was for: a fixed set, never a path."""

LIMIT_KINDS = ("per_source", "global", "store_unavailable", "quota", "proxy_concurrency")
"""``dcr_gateway_limit_rejections_total{limit}``: the per-source and global rate limits (429), the counter store
down with ``on_backend_failure=closed`` (503), the managed-client quota (403), the front door's in-flight bound per
source (429)."""

CIMD_OUTCOMES = ("fetched", "not_modified", "refused_url", "refused_policy", "refused_fetch", "refused_document")

PROVIDER_OUTCOMES = (
    "success",
    "not_found",
    "conflict",
    "rejected",
    "unavailable",
    "auth_error",
    "misconfigured",
    "error",
)

ROLLBACK_REASONS = ("request_cancelled", "answer_not_written", "response_failed")
"""Why an answer that hands credentials over was not: the request was cancelled (the client went away, the
shutdown's bound), its bytes could not be given to the connection, or it could not be built (an update only: a
registration's is answered 500 and counted there)."""

_LABEL_TEXT = re.compile(r"^[a-z_]{1,48}$")


def error_label(error: str | None) -> str:
    """The ``error`` label of an answer: ``""`` for none, a known code, or ``other``."""
    if not error:
        return ""
    return error if error in ERROR_CODES and _LABEL_TEXT.match(error) else "other"


def status_outcome(status: int) -> str:
    """``success`` (2xx/3xx), ``refused`` (4xx: the client's request or a limit), ``error`` (5xx)."""
    if status < 400:
        return "success"
    return "refused" if status < 500 else "error"


@dataclass(frozen=True)
class _Watched:
    issuer: str
    read: Callable[[], float | None]


class _ScrapeTimeGauges(Collector):
    """Gauges read when scraped: discovery document age, managed clients per issuer and the quota's maximum."""

    def __init__(self) -> None:
        self.discovery_age: list[_Watched] = []
        self.managed_clients: list[_Watched] = []
        self.managed_clients_max: list[_Watched] = []

    def collect(self) -> Iterator[Metric]:
        for name, doc, watched in (
            (
                f"{PREFIX}_discovery_document_age_seconds",
                "Seconds since the served discovery document (RFC 8414) of an issuer was fetched from the provider "
                "(absent until the first fetch)",
                self.discovery_age,
            ),
            (
                f"{PREFIX}_managed_clients",
                "Managed clients of an issuer as the quota counts them (absent until the first listing)",
                self.managed_clients,
            ),
            (
                f"{PREFIX}_managed_clients_max",
                "The quota of managed clients per issuer (limits.max_clients_per_issuer; absent when off)",
                self.managed_clients_max,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["issuer"])
            for entry in watched:
                value = entry.read()
                if value is not None:
                    family.add_metric([entry.issuer], value)
            yield family


class PlainCounter(Collector):
    """A labelled counter recorded without a lock, read by the registry at scrape time.

    ``prometheus_client``'s ``Counter`` takes a lock per ``inc`` (and its ``labels()`` another per look-up): the
    gateway records from its one event loop thread, and the scrape (``/metrics`` on the management listener) runs
    on the same loop, so a plain float per label set is enough. The exposition is exactly a ``Counter``'s: family
    ``name`` without ``_total``, samples ``name_total`` and ``name_created`` (unless ``prometheus_client``'s
    created series are disabled), label sets in the order they were first used.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry):
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def child(self, labelvalues: tuple[str, ...]) -> list[float]:
        """The label set's ``[value, created]`` (made at 0 on first use): ``child[0] += 1`` counts one."""
        entry = self.values.get(labelvalues)
        if entry is None:
            entry = self.values[labelvalues] = [0.0, time.time()]
        return entry

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        created = prometheus_metrics._use_created
        for labelvalues, (value, at) in list(self.values.items()):
            labels = dict(zip(self.labelnames, labelvalues, strict=True))
            metric.add_sample(f"{self.name}_total", labels, value)
            if created:
                metric.add_sample(f"{self.name}_created", dict(labels), at)
        yield metric


class PlainHistogramChild:
    """One label set of a :class:`PlainHistogram`: per-bucket (not cumulative) counts, the sum, the creation time."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """The first bucket whose upper bound is >= ``amount`` (``Histogram.observe``'s rule), found by bisection.
        NaN, as in ``prometheus_client``: added to the sum (which becomes NaN), in no bucket, so not counted
        (``bisect_left`` would answer 0 for it: no comparison with NaN is true)."""
        self.sum += amount
        if isnan(amount):
            return
        self.counts[bisect_left(self.bounds, amount)] += 1.0  # the last bound is +Inf: always a bucket


class PlainHistogram(Collector):
    """A labelled histogram recorded without a lock (see :class:`PlainCounter`); the exposition is exactly a
    ``Histogram``'s: cumulative ``_bucket{le}`` samples, ``_count``, ``_sum``, ``_created``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ):
        bounds = [float(b) for b in buckets]
        if bounds[-1] != INF:
            bounds.append(INF)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = bounds
        self.les = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self.children: dict[tuple[str, ...], PlainHistogramChild] = {}
        registry.register(self)

    def child(self, labelvalues: tuple[str, ...]) -> PlainHistogramChild:
        entry = self.children.get(labelvalues)
        if entry is None:
            entry = self.children[labelvalues] = PlainHistogramChild(self.bounds)
        return entry

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "histogram")
        created = prometheus_metrics._use_created
        for labelvalues, child in list(self.children.items()):
            labels = dict(zip(self.labelnames, labelvalues, strict=True))
            accumulated = 0.0
            for le, count in zip(self.les, list(child.counts), strict=True):
                accumulated += count
                metric.add_sample(f"{self.name}_bucket", {**labels, "le": le}, accumulated)
            metric.add_sample(f"{self.name}_count", dict(labels), accumulated)
            if self.bounds[0] >= 0:
                metric.add_sample(f"{self.name}_sum", dict(labels), child.sum)
            if created:
                metric.add_sample(f"{self.name}_created", dict(labels), child.created)
        yield metric


class GatewayMetrics:
    """Every metric of one gateway app, in its own registry (``registry``)."""

    def __init__(self, *, version: str) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.registration_requests = PlainCounter(
            f"{PREFIX}_registration_requests_total",
            "RFC 7591 registrations and RFC 7592 read/update/delete requests by issuer, operation, outcome "
            "(success, refused, error) and error code",
            ["issuer", "operation", "outcome", "error"],
            registry,
        )
        self.provider_requests = PlainCounter(
            f"{PREFIX}_provider_requests_total",
            "Calls to the provider's admin API (adapter operations) by provider, operation and outcome",
            ["provider", "operation", "outcome"],
            registry,
        )
        self.provider_duration = PlainHistogram(
            f"{PREFIX}_provider_request_duration_seconds",
            "Duration of calls to the provider's admin API (adapter operations)",
            ["provider", "operation"],
            registry,
        )
        self.discovery_refresh_failures = Counter(
            f"{PREFIX}_discovery_refresh_failures_total",
            "Failed fetches of an issuer's discovery document from the provider (RFC 8414)",
            ["issuer"],
            registry=registry,
        )
        self.http_requests = PlainCounter(
            f"{PREFIX}_http_requests_total",
            "Requests on the public listener by route class and status code",
            ["route", "code"],
            registry,
        )
        self.http_duration = PlainHistogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Duration of requests on the public listener by route class (proxied: until the answer is relayed)",
            ["route"],
            registry,
        )
        self.limit_rejections = Counter(
            f"{PREFIX}_limit_rejections_total",
            "Requests refused by a limit: per_source, global, store_unavailable, quota, proxy_concurrency",
            ["limit"],
            registry=registry,
        )
        self.cimd_fetches = Counter(
            f"{PREFIX}_cimd_fetches_total",
            "Client ID Metadata Document fetches by outcome",
            ["outcome"],
            registry=registry,
        )
        self.audit_write_failures = Counter(
            f"{PREFIX}_audit_write_failures_total",
            "Audit events that could not be written (the operation they record stands; see the log's "
            "audit.write_failed lines)",
            registry=registry,
        )
        self.registrations_rolled_back = Counter(
            f"{PREFIX}_registrations_rolled_back_total",
            "Registrations whose client was created but whose 201 could not be handed over, so the client was "
            "deleted again, by issuer and reason (request_cancelled, answer_not_written)",
            ["issuer", "reason"],
            registry=registry,
        )
        self.updates_restored = Counter(
            f"{PREFIX}_client_updates_restored_total",
            "RFC 7592 updates applied in the provider but whose 200 could not be handed over, so the client's "
            "previous registration was restored, by issuer and reason (request_cancelled, answer_not_written, "
            "response_failed)",
            ["issuer", "reason"],
            registry=registry,
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info", "The running dcr-gateway's version (always 1)", ["version"], registry=registry
        )
        self.build_info.labels(version).set(1)
        self._gauges = _ScrapeTimeGauges()
        registry.register(self._gauges)
        # The per-request families (registrations, admin calls, requests by route) are plain counters and bucket
        # arrays read at scrape time (PlainCounter, PlainHistogram: no lock per request); their label sets' entries
        # are kept by label values here, one dict look-up per record. Bounded: every label value is from a fixed
        # set or a configured issuer (the module's rule), so is every key.
        self._registration_children: dict[tuple[str, str, str, str], list[float]] = {}
        self._http_children: dict[tuple[str, int], tuple[list[float], PlainHistogramChild]] = {}
        self._provider_children: dict[tuple[str, str, str], tuple[list[float], PlainHistogramChild]] = {}

    # ------------------------------------------------------------------------------------- recorders

    def registration_request(self, *, issuer: str, operation: str, status: int, error: str | None) -> None:
        """One answer of the registration or client configuration endpoint."""
        key = (issuer, operation, status_outcome(status), error_label(error))
        child = self._registration_children.get(key)
        if child is None:
            child = self._registration_children[key] = self.registration_requests.child(key)
        child[0] += 1.0

    def audit_write_failed(self) -> None:
        self.audit_write_failures.inc()

    def registration_rolled_back(self, *, issuer: str, reason: str) -> None:
        self.registrations_rolled_back.labels(issuer, reason if reason in ROLLBACK_REASONS else "other").inc()

    def update_restored(self, *, issuer: str, reason: str) -> None:
        self.updates_restored.labels(issuer, reason if reason in ROLLBACK_REASONS else "other").inc()

    def provider_request(self, *, provider: str, operation: str, outcome: str, seconds: float) -> None:
        key = (provider, operation, outcome)
        children = self._provider_children.get(key)
        if children is None:
            children = self._provider_children[key] = (
                self.provider_requests.child(key),
                self.provider_duration.child((provider, operation)),
            )
        children[0][0] += 1.0
        children[1].observe(seconds)

    def http_request(self, *, route: str, status: int, seconds: float) -> None:
        children = self._http_children.get((route, status))
        if children is None:
            label = route if route in ROUTE_CLASSES else "other"
            children = self._http_children[(route, status)] = (
                self.http_requests.child((label, str(status))),
                self.http_duration.child((label,)),
            )
        children[0][0] += 1.0
        children[1].observe(seconds)

    def limit_rejected(self, limit: str) -> None:
        self.limit_rejections.labels(limit if limit in LIMIT_KINDS else "other").inc()

    def cimd_fetch(self, outcome: str) -> None:
        self.cimd_fetches.labels(outcome if outcome in CIMD_OUTCOMES else "other").inc()

    def discovery_refresh_failed(self, issuer: str) -> None:
        self.discovery_refresh_failures.labels(issuer).inc()

    # ------------------------------------------------------------------------------ scrape-time gauges

    def watch_discovery(self, issuer: str, fetched_at: Callable[[], float | None]) -> None:
        """``fetched_at``: the ``time.time()`` of the served document's fetch, ``None`` while there is none."""

        def age() -> float | None:
            at = fetched_at()
            return None if at is None else max(0.0, time.time() - at)

        self.discovery_refresh_failures.labels(issuer)  # the series exists (at 0) from the start
        self._gauges.discovery_age.append(_Watched(issuer, age))

    def watch_quota(self, issuer: str, *, count: Callable[[], int | None], maximum: int) -> None:
        self._gauges.managed_clients.append(_Watched(issuer, lambda: None if (n := count()) is None else float(n)))
        if maximum > 0:
            self._gauges.managed_clients_max.append(_Watched(issuer, lambda: float(maximum)))

    def initialize(self, issuers: Iterable[str]) -> None:
        """Series that exist at 0 before anything happened, so ``rate()`` and ``increase()`` see the first one."""
        for issuer in issuers:
            for operation in REGISTRATION_OPERATIONS:
                self.registration_requests.child((issuer, operation, "success", ""))
        for kind in LIMIT_KINDS:
            self.limit_rejections.labels(kind)
