"""A faster encoder for the per-SLO gauges: the exposition prometheus-client writes, in about half the time.

prometheus-client's ``generate_latest`` checks and escapes every label name and value of every sample
and sorts them: 80% of the 4 s that 10,000 SLOs' series took to render (``bench/serving_bench.py``).
The per-SLO series are all gauges and infos whose label names were checked when the exporter made them
(``slo_series_labels``), and the same service and SLO names repeat on ~40 series each, so this encoder
escapes each distinct value once per render and writes labels in the order they were given (the
exposition formats do not require an order). Families of any other type, or samples with a timestamp or
an exemplar, are refused with ``ValueError``: they have no business in this part.

The output parses to the same families and samples as prometheus-client's in both formats, text 0.0.4
and OpenMetrics 1.0 (tests/test_prepared_metrics.py compares them).

The per-SLO families themselves are now written by ``budgetguard.exporter._SLOLines`` straight from the
evaluations, with this module's headers, escaping and number format, and must give the bytes ``encode``
gives for ``_SLOFamilies`` (tests/test_exporter_lines.py); ``encode`` writes the small rest of the part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

_TYPES = ("gauge", "info")
_INF = float("inf")
# prometheus-client's float formatting (Go's: +Inf, NaN, exponents), so values read back identically.
_float_text: Callable[[float], str] = floatToGoString


def _help_text(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _help_openmetrics(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def header(metric: Metric, openmetrics: bool) -> str:
    """The ``# HELP``, ``# TYPE`` (and OpenMetrics' ``# UNIT``) lines of a gauge or info family."""
    name, kind = metric.name, metric.type
    if kind not in _TYPES:
        raise ValueError(f"{name}: only gauges and infos are encoded here, not {kind}")
    if openmetrics:
        unit = f"# UNIT {name} {metric.unit}\n" if metric.unit else ""
        return f"# HELP {name} {_help_openmetrics(metric.documentation)}\n# TYPE {name} {kind}\n{unit}"
    if kind == "info":
        name, kind = name + "_info", "gauge"
    return f"# HELP {name} {_help_text(metric.documentation)}\n# TYPE {name} {kind}\n"


def escape_label_value(value: str) -> str:
    """A label value as both exposition formats quote it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def go_float(value: float) -> str:
    """``floatToGoString(value)``, with the common case (a plain ``repr``) taken without its checks.

    Go writes a positive number with 7 or more digits before the point with an exponent (1e+06), and
    the infinities and NaN in words; every other finite float is Python's ``repr``.
    """
    value = float(value)
    if -_INF < value < 1e6:
        return repr(value)
    if 1e6 <= value < 1e16:  # repr has a point and no exponent here: 2592000.0 -> 2.592e+06
        text = repr(value)
        dot = text.find(".")
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return _float_text(value)


def encode(families: Iterable[Metric], openmetrics: bool) -> bytes:
    """The exposition of ``families`` (gauges and infos only), without OpenMetrics' ``# EOF``."""
    out: list[str] = []
    escaped: dict[str, str] = {}
    for metric in families:
        out.append(header(metric, openmetrics))
        for sample in metric.samples:
            if sample.timestamp is not None or sample.exemplar is not None:
                raise ValueError(
                    f"{sample.name}: samples with a timestamp or an exemplar are not encoded here"
                )
            parts = []
            for label, value in sample.labels.items():
                text = escaped.get(value)
                if text is None:
                    text = escaped[value] = escape_label_value(value)
                parts.append(f'{label}="{text}"')
            value_text = _float_text(sample.value)
            if parts:
                out.append(f"{sample.name}{{{','.join(parts)}}} {value_text}\n")
            else:
                out.append(f"{sample.name} {value_text}\n")
    return "".join(out).encode("utf-8")
