"""Metrics sources: adapters that answer PromQL instant queries for the engine (``ports.MetricsSource``).

Each adapter owns its third-party client (httpx here) and translates its failures into
``budgetguard.core.errors.SourceError``; nothing outside this package talks to a metrics backend.
"""

from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource

__all__ = ["PrometheusConfig", "PrometheusSource"]
