"""Prometheus metrics of one proxy app, in the app's own registry (so several apps can live
in one process, as they do in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("oyster_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.decisions = Counter("oyster_decisions", "decisions made, by risk level and strategy",
                                 ["level", "strategy"], registry=r)
        self.outcomes = Counter("oyster_outcomes", "how decided requests ended "
                                "(decided, answered, fallback, upstream_error)", ["outcome"],
                                registry=r)
        self.verification_failures = Counter(
            "oyster_verification_failures", "replies that failed verification, by problem code",
            ["problem"], registry=r)
        self.rejections = Counter("oyster_rejected_requests", "requests answered with an "
                                  "error, by status and error code", ["status", "code"],
                                  registry=r)
        self.auth_failures = Counter("oyster_auth_failures", "failed authentication attempts "
                                     "(missing or invalid key; blocked: the client address "
                                     "used up its allowance)", ["reason"], registry=r)
        self.upstream_errors = Counter("oyster_upstream_errors", "upstream failures, by kind",
                                       ["kind"], registry=r)
        self.request_latency = Histogram("oyster_request_latency_seconds",
                                         "whole request, arrival to last byte", ["route"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.decide_latency = Histogram("oyster_decide_latency_seconds",
                                        "assessment + game + chain", buckets=_LATENCY_BUCKETS,
                                        registry=r)
        self.upstream_latency = Histogram("oyster_upstream_latency_seconds",
                                          "upstream generation incl. verification",
                                          buckets=_LATENCY_BUCKETS, registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
