"""The lab: a real Prometheus with made-up but exactly known history, for tests, benchmarks and the demo.

budgetguard's numbers must match what a real Prometheus answers, so its tests do not fake PromQL: they
generate metric history here, backfill it with ``promtool tsdb create-blocks-from openmetrics`` and run
the Debian ``prometheus`` 2.42 binary on a loopback port.

- ``lab.openmetrics``: pure helpers. Series values, builders, the OpenMetrics writer promtool accepts,
  and ``expected_increase``/``expected_rate``, a faithful copy of Prometheus 2.42's ``extrapolatedRate``
  so that tests can state the exact number Prometheus must return.
- ``lab.prometheus``: ``PrometheusLab``, which backfills, configures, starts, stops and restarts one
  Prometheus process on 127.0.0.1 and never leaves it behind.
- ``lab.history``: the 31-day demo history of the ``checkout`` and ``search`` services (an incident,
  a counter reset, a slow latency regression) used by tests, the bench and the tutorial.
- ``lab.target``: a live loopback scrape target whose counters tests can steer mid-run.
- ``lab.victoria`` and ``lab.metricsql``: the same for VictoriaMetrics 1.79: ``VictoriaLab`` imports
  the same ``Series`` through its import API, and ``expected_vm_increase``/``expected_vm_rate`` copy
  MetricsQL's non-extrapolating ``increase``/``rate``.

The lab is test infrastructure: it is not part of the ``budgetguard`` distribution, budgetguard never
imports it, and it imports nothing from budgetguard (so it can judge budgetguard's numbers
independently).
"""
