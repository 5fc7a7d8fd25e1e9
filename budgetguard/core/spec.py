"""SLO declarations: the one native model every format is turned into.

``budgetguard/v1`` is a superset of Sloth's ``prometheus/v1``: a Sloth file loads unchanged, and the
native version adds a per-SLO ``window``, a latency SLI from a classic histogram, per-SLO burn-rate
``tiers`` and ``min_events``. Models are frozen and reject unknown fields, so a typo is an error, not a
silently ignored setting.

This module is pure: it turns already-parsed YAML data into models and never reads files, the clock
or the environment (``loader`` does the reading and turns validation errors into ``SpecProblem``s).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from budgetguard.core import promql
from budgetguard.core.calendar import NOMINAL_LENGTH, CalendarUnit, Period, period_at, zone
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.promql import WINDOW_PLACEHOLDER

NATIVE_VERSION = "budgetguard/v1"
SLOTH_VERSION = "prometheus/v1"

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SLO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DEFAULT_WINDOW = timedelta(days=30)


def _parse_window(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; write it as a string such as '30d' or '5m'")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_window),
    PlainSerializer(format_duration, return_type=str),
]


class CalendarWindow(BaseModel):
    """``window: {calendar: month, timezone: Europe/Berlin}``: the budget resets when each calendar
    period begins, at local midnight (``budgetguard.core.calendar``); weeks begin on Monday."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar: CalendarUnit
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def nominal_length(self) -> timedelta:
        return NOMINAL_LENGTH[self.calendar]

    def period(self, at: datetime) -> Period:
        return period_at(at, self.calendar, self.timezone)


# The tags of the window's two shapes. pydantic puts them in an error's location; they hold a space, so
# no field is named so, and the loader drops them to name the field as written (``slos[0].window``).
ROLLING_TAG, CALENDAR_TAG = "rolling window", "calendar window"
UNION_TAGS = frozenset({ROLLING_TAG, CALENDAR_TAG})


def _window_kind(value: Any) -> str:
    return CALENDAR_TAG if isinstance(value, dict | CalendarWindow) else ROLLING_TAG


# A rolling duration ("30d") or a calendar period ({calendar: month}); the discriminator keeps a mistake
# in one shape from being reported against the other too.
WindowField = Annotated[
    Annotated[Duration, Tag(ROLLING_TAG)] | Annotated[CalendarWindow, Tag(CALENDAR_TAG)],
    Discriminator(_window_kind),
]


def _objective_decimal(value: Any) -> Any:
    # YAML gives 99.9 as a binary float; repr() is the shortest text that round-trips, which is what
    # the author wrote, so the budget of 99.9 is exactly 1/1000 (reference §2.1 "Floating point").
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


Objective = Annotated[Decimal, BeforeValidator(_objective_decimal)]


def _label_text(value: Any) -> Any:
    """A label or annotation value as Sloth reads it: YAML scalars such as ``2`` or ``true`` are text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    return value


# Sloth decodes labels into Go map[string]string, where `tier: 2` is the string "2" (reference §1.1).
LabelText = Annotated[str, BeforeValidator(_label_text)]


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(
                f"label name {name!r} is not a valid Prometheus label name "
                "(letters, digits and underscores, not starting with a digit or '__')"
            )
    return labels


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


def _require_placeholder(query: str) -> str:
    if not WINDOW_PLACEHOLDER.search(query):
        raise ValueError(
            "the query must contain the window placeholder {{.window}} in its range selectors, "
            "e.g. rate(http_requests_total[{{.window}}]), so budgetguard can evaluate it over every window"
        )
    problem = promql.check(query)
    if problem is not None:
        # Refused at load, with its place, rather than as a verdict in error on every cycle.
        raise ValueError(f"{problem}; fix the query (Prometheus would refuse it the same way)")
    return query


class EventsSLI(_Frozen):
    """Bad and total events as two PromQL queries (rates over ``{{.window}}``)."""

    error_query: str = Field(min_length=1)
    total_query: str = Field(min_length=1)

    check_placeholders = field_validator("error_query", "total_query")(_require_placeholder)


class RawSLI(_Frozen):
    """A single PromQL query returning the error ratio over ``{{.window}}``."""

    error_ratio_query: str = Field(min_length=1)

    check_placeholder = field_validator("error_ratio_query")(_require_placeholder)


class LatencySLI(_Frozen):
    """Good events are requests faster than ``threshold_seconds`` in a classic histogram.

    good = the ``_bucket`` series at ``le`` = threshold, total = ``_count`` (prometheus/docs
    practices/histograms.md, Apdex section). The threshold must be one of the histogram's bucket
    boundaries: any other value selects nothing.
    """

    metric: str = Field(min_length=1, description="histogram base name, without _bucket/_count")
    selector: str = Field(default="", description='label matchers, e.g. job="checkout", route!="/health"')
    threshold_seconds: float = Field(gt=0)

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", value):
            raise ValueError(f"{value!r} is not a metric name")
        for suffix in ("_bucket", "_count", "_sum"):
            if value.endswith(suffix):
                raise ValueError(f"give the histogram's base name without {suffix!r}")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        inner = value.strip()
        if inner.startswith("{") and inner.endswith("}"):
            inner = inner[1:-1].strip()
        if re.search(r"(^|[\s,{])le\s*(=|!=|=~|!~)", inner):
            raise ValueError(
                "do not match on 'le' in the selector: budgetguard adds it from threshold_seconds"
            )
        if "{" in inner or "}" in inner:
            raise ValueError('write only label matchers, e.g. job="checkout", route=~"/api/.*"')
        problem = promql.check(inner, prefix="x{", suffix="}") if inner else None
        if problem is not None:
            raise ValueError(
                f"{problem} (the query is the selector); write label matchers such as "
                'job="checkout", route=~"/api/.*"'
            )
        return inner


class PluginSLI(_Frozen):
    """Sloth's SLI plugins run Go code inside Sloth; budgetguard cannot run them."""

    id: str
    options: dict[str, Any] = Field(default_factory=dict)


class SLI(_Frozen):
    events: EventsSLI | None = None
    raw: RawSLI | None = None
    latency: LatencySLI | None = None
    plugin: PluginSLI | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SLI:
        if self.plugin is not None:
            raise ValueError(
                "Sloth SLI plugins (sli.plugin) are Go code that only Sloth can run; "
                "replace the plugin with the query it generates, as sli.raw.error_ratio_query or sli.events"
            )
        given = [name for name in ("events", "raw", "latency") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "declare exactly one SLI kind: events (error_query + total_query), raw (error_ratio_query) "
                f"or latency (a histogram); found {', '.join(given) or 'none'}"
            )
        return self


class AlertMeta(_Frozen):
    disable: bool = False
    labels: dict[str, LabelText] = Field(default_factory=dict)
    annotations: dict[str, LabelText] = Field(default_factory=dict)

    check_labels = field_validator("labels")(_check_labels)


class Alerting(_Frozen):
    # Sloth needs a name only for an alert it generates: an SLO with both alerts disabled may omit it.
    name: str | None = Field(default=None, min_length=1)
    labels: dict[str, LabelText] = Field(default_factory=dict)
    annotations: dict[str, LabelText] = Field(default_factory=dict)
    page_alert: AlertMeta = Field(default_factory=AlertMeta)
    ticket_alert: AlertMeta = Field(default_factory=AlertMeta)

    check_labels = field_validator("labels")(_check_labels)

    @model_validator(mode="after")
    def _named_when_enabled(self) -> Alerting:
        if self.name is None and not (self.page_alert.disable and self.ticket_alert.disable):
            raise ValueError(
                "alerting.name is required while page_alert or ticket_alert is enabled: give the alerts a "
                "name, or disable both (page_alert: {disable: true}, ticket_alert: {disable: true})"
            )
        return self


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


class TierSpec(_Frozen):
    """One multi-window burn-rate tier as written in a file: a burn rate, or the budget it consumes."""

    severity: Severity
    long_window: Duration
    short_window: Duration
    burn_rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    budget_percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _shape(self) -> TierSpec:
        if (self.burn_rate is None) == (self.budget_percent is None):
            raise ValueError(
                "give exactly one of burn_rate (e.g. 14.4) or budget_percent (the share of the SLO "
                "window's budget the tier may consume within long_window, e.g. 2)"
            )
        if self.short_window >= self.long_window:
            raise ValueError("short_window must be shorter than long_window (the workbook uses 1/12 of it)")
        return self


class BurnTier(BaseModel):
    """A resolved tier: fires when both windows burn faster than ``burn_rate``."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    long_window: timedelta
    short_window: timedelta
    burn_rate: float
    budget_fraction: float  # share of the SLO window's budget consumed within long_window at burn_rate


# SRE Workbook ch. 5, Table 5-8 plus the 24h/2h ticket pair of its iteration-6 example rules: the
# share of a 30-day budget each tier lets burn before it fires. Thresholds follow from
# burn_rate = budget_fraction * period / long_window, so they scale to any SLO window.
DEFAULT_TIERS: tuple[tuple[Severity, timedelta, timedelta, Fraction], ...] = (
    (Severity.PAGE, timedelta(hours=1), timedelta(minutes=5), Fraction(2, 100)),
    (Severity.PAGE, timedelta(hours=6), timedelta(minutes=30), Fraction(5, 100)),
    (Severity.TICKET, timedelta(days=1), timedelta(hours=2), Fraction(10, 100)),
    (Severity.TICKET, timedelta(days=3), timedelta(hours=6), Fraction(10, 100)),
)


def burn_rate_for(budget_fraction: Fraction | float, period: timedelta, long_window: timedelta) -> float:
    """Workbook: the burn rate that consumes ``budget_fraction`` of the budget within ``long_window``."""
    return float(
        Fraction(budget_fraction)
        * Fraction(period // timedelta(milliseconds=1))
        / Fraction(long_window // timedelta(milliseconds=1))
    )


def default_tiers(period: timedelta) -> tuple[BurnTier, ...]:
    """The workbook's tiers scaled to ``period``; tiers whose long window exceeds the period are dropped."""
    return tuple(
        BurnTier(
            severity=severity,
            long_window=long,
            short_window=short,
            burn_rate=burn_rate_for(fraction, period, long),
            budget_fraction=float(fraction),
        )
        for severity, long, short, fraction in DEFAULT_TIERS
        if long <= period
    )


# The most events a window can be asked to hold before it counts: a million requests a second for a
# year is about 3e13. A larger min_events leaves every window inconclusive forever, so no tier could
# ever fire; it is refused rather than accepted as a silent off switch.
MAX_EVENTS = 1e14


_ACTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _action_names(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not _ACTION_NAME.match(name):
            raise ValueError(f"{name!r} is not an action name (letters, digits, '-', '_', '.')")
    if len(set(names)) != len(names):
        raise ValueError("an action is listed twice; list each once")
    return names


def _quantile_text(quantile: float) -> str:
    """0.99 -> "p99", 0.999 -> "p99.9": how the article and dashboards name a quantile."""
    text = format(Decimal(repr(quantile)) * 100, "f")
    return "p" + (text.rstrip("0").rstrip(".") if "." in text else text)


def seconds_text(seconds: float) -> str:
    """0.5 -> "500ms", 2.5 -> "2.5s": a latency threshold as people write it."""
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


class CanaryLatencySpec(LatencySLI):
    """``canary.latency``: "if the p99 latency of the canary exceeds 500ms for more than two minutes".

    ``p99 > 500ms`` says the same as "more than 1% of requests are slower than 500ms": a proportion,
    slow = ``_count`` minus the bucket at ``le`` = ``threshold_seconds``, judged with the same confidence
    bounds as an error ratio against the limit ``1 - quantile``. A classic histogram cannot place a
    quantile between its buckets, so the threshold must be one of its bucket boundaries (as for the
    latency SLI). ``for``, as in a Prometheus alerting rule, is how long the breach must be judged
    burning without interruption before the guard acts; ``window`` is the range the share of slow
    requests is measured over, like the ``[1m]`` of ``histogram_quantile(0.99, rate(...[1m]))``.
    """

    quantile: float
    hold: Duration = Field(default=timedelta(0), alias="for")
    window: Duration | None = None

    @field_validator("quantile")
    @classmethod
    def _quantile(cls, value: float) -> float:
        if not 0 < value < 1:
            example = f"{value / 100:g} for p{value:g}" if 1 < value < 100 else "0.99 for p99"
            raise ValueError(
                f"quantile is a fraction strictly between 0 and 1, not a percent: write {example}"
            )
        return value

    @field_validator("hold", mode="before")
    @classmethod
    def _hold(cls, value: Any) -> Any:
        # 0s is allowed here (act on the first burning verdict), unlike a window.
        return parse_duration(value, allow_zero=True) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _window_within_hold(self) -> CanaryLatencySpec:
        window = self.measured_over
        if self.hold > timedelta(0) and window >= self.hold:
            raise ValueError(
                f"the latency window ({format_duration(window)}{'' if self.window else ', the default'}) "
                f"must be shorter than 'for' ({format_duration(self.hold)}): a breach stays in the window "
                "for as long as the window after it ends, so a window this long would act on breaches "
                "shorter than 'for'; set window to at most half of 'for' (e.g. "
                f"window: {format_duration(max(self.hold / 2, timedelta(seconds=1)))}) or lengthen 'for'"
            )
        return self

    @property
    def measured_over(self) -> timedelta:
        return self.window or CANARY_FAST_WINDOW

    @property
    def slow_ratio_limit(self) -> float:
        """1 - quantile, exactly as written: 0.99 allows 1% slow requests, not 1.0000000000000009%."""
        return float(1 - Fraction(Decimal(repr(self.quantile))))

    @property
    def quantile_name(self) -> str:
        return _quantile_text(self.quantile)


class BudgetConsumedSpec(_Frozen):
    """``canary.budget_consumed``: "a canary that consumes 0.05% of the budget in ten minutes is stopped".

    ``percent`` is a share of the error budget of the SLO's window (not of requests): 0.05 with a 30d
    window and ``within: 10m`` is the burn rate 0.0005 x 43,200 min / 10 min = 2.16 (workbook:
    burn = fraction x period / lookback), used as the canary's burn limit over the ``within`` window.
    """

    percent: float = Field(gt=0, le=100)
    within: Duration


def _plausible_events(value: float | None) -> float | None:
    if value is not None and value > MAX_EVENTS:
        raise ValueError(
            f"{value:g} events is more than any window holds (a million requests a second for a year is "
            f"3e13), so every window would stay inconclusive and nothing could ever fire; use the number "
            f"of events a window needs before it counts, at most {MAX_EVENTS:g}, e.g. 50"
        )
    return value


class CanarySpec(_Frozen):
    """``canary:``: judge each value of ``label`` on its own, and halt the rollout of a burning one.

    Every knob has a default that follows from the SLO (see ``resolve_canary``), so the smallest block is
    ``label`` and ``on_burn``.
    """

    label: str
    baseline: str | None = Field(default=None, min_length=1)
    windows: tuple[Duration, ...] | None = None
    burn_limit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    method: Literal["exact", "wilson"] = "exact"
    compare_baseline: bool = True
    baseline_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    streak: int = Field(default=1, ge=1, le=100)
    cooldown: Duration = timedelta(minutes=5)
    resolve_after: Duration = timedelta(minutes=10)
    promote_min_events: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # The article's two rules (#6): a latency quantile held for a duration, and a share of the budget
    # consumed within a lookback (another way to write burn_limit and the window).
    latency: CanaryLatencySpec | None = None
    budget_consumed: BudgetConsumedSpec | None = None
    on_burn: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    # Who is affected (#6): when an incident opens, one extra query breaks the canary's errors down by
    # these labels (region, route, customer tier), so the incident and the page say who is hurt.
    affected_by: tuple[str, ...] = ()
    # canary: the versions serve users, a burning one is halted. shadow: a dark launch, the SLI counts
    # mismatches between primary and shadow responses; a burning shadow blocks its own promotion.
    kind: Literal["canary", "shadow"] = "canary"

    check_actions = field_validator("on_burn", "notify")(_action_names)
    check_events = field_validator("promote_min_events")(_plausible_events)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL_NAME.match(value) or value.startswith("__"):
            raise ValueError(
                f"{value!r} is not a Prometheus label name; give the label that tells versions apart, "
                "e.g. version or rollouts_pod_template_hash"
            )
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[timedelta, ...] | None) -> tuple[timedelta, ...] | None:
        if value is not None and not value:
            raise ValueError("give at least one window, or leave 'windows' out for the defaults")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a window is listed twice; list each once")
        return value

    @field_validator("affected_by")
    @classmethod
    def _affected_by(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        if len(set(value)) != len(value):
            raise ValueError("a label is listed twice; list each once")
        if info.data.get("label") in value:
            raise ValueError(
                "the canary label is already how versions are told apart; list the labels that say "
                "who is hurt, e.g. [region, route]"
            )
        return value


def _freeze_shorthand(value: Any) -> Any:
    # `freeze: true` is the workbook's policy with its defaults; `freeze: false` opts one SLO out of
    # its file's policy.
    if value is True:
        return {}
    if value is False:
        return {"enabled": False}
    return value


class FreezeSpec(_Frozen):
    """``freeze:``: the error budget policy's release freeze (SRE workbook, Appendix B).

    "If the service has exceeded its error budget for the preceding four-week window, we will halt all
    changes and releases other than P0 issues or security fixes". While this SLO's budget remaining
    is at or under zero, or under ``below``, the release gates refuse new rollouts of its service,
    except those whose labels match ``except`` (e.g. ``change: [security-fix, rollback]``).
    """

    enabled: bool = True
    below: float = 0.0
    exceptions: dict[str, tuple[str, ...]] = Field(default_factory=dict, alias="except")

    @field_validator("below")
    @classmethod
    def _below(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"below is the share of the error budget left under which releases freeze, from 0 "
                f"(frozen only once the budget is spent) up to but not including 1, e.g. 0.1; got {value!r}"
            )
        return value

    @field_validator("exceptions")
    @classmethod
    def _exceptions(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, allowed in value.items():
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(
                    f"{name!r} is not a label name; map a label the caller sends to the values that "
                    "may still ship, e.g. except: {change: [security-fix, rollback]}"
                )
            if not allowed or any(not v.strip() for v in allowed):
                raise ValueError(
                    f"list at least one non-empty value for {name!r}, e.g. {name}: [security-fix]"
                )
        return value


FreezeField = Annotated[FreezeSpec | None, BeforeValidator(_freeze_shorthand)]


class SLOSpec(_Frozen):
    """One entry of ``slos:`` as written in a file."""

    name: str = Field(min_length=1)
    objective: Objective
    description: str = ""
    labels: dict[str, LabelText] = Field(default_factory=dict)
    sli: SLI
    alerting: Alerting | None = None
    # budgetguard/v1 additions (rejected in prometheus/v1 files, which must stay loadable by Sloth):
    window: WindowField | None = None
    tiers: tuple[TierSpec, ...] | None = None
    min_events: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    canary: CanarySpec | None = None
    freeze: FreezeField = None

    check_labels = field_validator("labels")(_check_labels)
    check_events = field_validator("min_events")(_plausible_events)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SLO_NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' and '.' only (the name is part of the SLO's id)")
        return value

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not Decimal(0) < value < Decimal(100):
            raise ValueError(
                "objective is a percentage strictly between 0 and 100, e.g. 99.9 "
                "(100 leaves no error budget: every burn rate would be infinite)"
            )
        if value < Decimal(1):
            # 0.999 is a ratio written where a percentage belongs: taken as written it is an objective
            # of 0.999 %, a budget of 99 %, which no burn could ever use (Pyrra's reader refuses it too).
            meant = (value * 100).normalize()
            raise ValueError(
                f"objective {value} is a percentage, so this asks for {value}% of good events (a budget "
                f"of {Decimal(100) - value}%); did you mean {meant:f}? Write the percentage, e.g. 99.9"
            )
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: tuple[TierSpec, ...] | None) -> tuple[TierSpec, ...] | None:
        if value is not None and not value:
            raise ValueError("give at least one tier, or leave 'tiers' out to use the workbook's defaults")
        return value


_NATIVE_ONLY_FIELDS = ("window", "tiers", "min_events", "canary", "freeze")


class SLOFile(_Frozen):
    """One document of a native or Sloth ``prometheus/v1`` file."""

    version: Literal["budgetguard/v1", "prometheus/v1"]
    service: str = Field(min_length=1)
    labels: dict[str, LabelText] = Field(default_factory=dict)
    slos: tuple[SLOSpec, ...] = Field(min_length=1)
    slo_plugins: dict[str, Any] | None = None
    freeze: FreezeField = None  # every SLO's policy unless it declares its own (shadows excepted)

    check_labels = field_validator("labels")(_check_labels)

    @field_validator("freeze")
    @classmethod
    def _native_freeze(cls, value: FreezeSpec | None, info: ValidationInfo) -> FreezeSpec | None:
        if value is not None and info.data.get("version") == SLOTH_VERSION:
            raise ValueError(
                f"'freeze' is a {NATIVE_VERSION} addition that Sloth's {SLOTH_VERSION} rejects; change "
                f"the file's version to {NATIVE_VERSION}, or remove 'freeze'"
            )
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if not _SLO_NAME.match(value):
            raise ValueError(
                "use letters, digits, '-', '_' and '.' only (the service is part of the SLO's id)"
            )
        return value

    @field_validator("slo_plugins")
    @classmethod
    def _no_plugins(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError(
                "Sloth SLO plugins change how Sloth generates rules and cannot run in budgetguard; "
                "remove slo_plugins (budgetguard's own rule generator and tiers cover the core plugins)"
            )
        return value


class BudgetConsumption(BaseModel):
    """A resolved ``budget_consumed``: ``fraction`` of the ``period``'s budget consumed within ``within``
    is the burn rate ``burn_rate`` held over ``within`` (workbook: fraction x period / lookback)."""

    model_config = ConfigDict(frozen=True)

    fraction: float
    within: timedelta
    period: timedelta
    burn_rate: float

    def consumed(self, burn_rate: float) -> float:
        """The share of the period's budget a burn rate consumes within ``within``."""
        return burn_rate * (self.within / self.period)


class CanaryPolicy(BaseModel):
    """A resolved ``canary:`` block: every default filled in from the SLO (``resolve_canary``)."""

    model_config = ConfigDict(frozen=True)

    label: str
    baseline: str | None
    windows: tuple[timedelta, ...]  # shortest first; a version burning in any of them is burning
    baseline_window: timedelta  # where "the version with most traffic" is measured
    burn_limit: float
    confidence: float
    method: Literal["exact", "wilson"]
    compare_baseline: bool
    baseline_confidence: float
    streak: int
    cooldown: timedelta
    resolve_after: timedelta
    promote_min_events: float | None
    on_burn: tuple[str, ...]
    notify: tuple[str, ...]
    affected_by: tuple[str, ...] = ()  # labels the errors of an incident's canary are broken down by
    kind: Literal["canary", "shadow"] = "canary"
    latency: CanaryLatencySpec | None = None  # the latency guard, judged besides the error ratio
    budget_consumed: BudgetConsumption | None = None  # when burn_limit and windows came from it

    @property
    def shadow(self) -> bool:
        return self.kind == "shadow"

    @property
    def actions(self) -> tuple[str, ...]:
        return self.on_burn + tuple(n for n in self.notify if n not in self.on_burn)


class FreezePolicy(BaseModel):
    """A resolved ``freeze:``: releases of the service stop while this SLO's budget is under ``below``
    (or spent), except for callers whose labels match ``exceptions`` (``budgetguard.core.freeze``)."""

    model_config = ConfigDict(frozen=True)

    below: float
    exceptions: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    inherited: bool = False  # from the file's freeze: rather than the SLO's own


class SLO(BaseModel):
    """A validated SLO, ready for the engine. Every format reader produces these."""

    model_config = ConfigDict(frozen=True)

    service: str
    name: str
    objective: Decimal  # percent, exactly as written
    window: timedelta  # rolling; for a calendar SLO the period's nominal length (calendar.NOMINAL_LENGTH)
    sli: SLI
    tiers: tuple[BurnTier, ...]
    min_events: float
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)  # file labels overlaid by the SLO's own
    alerting: Alerting | None = None
    canary: CanaryPolicy | None = None
    freeze: FreezePolicy | None = None
    source: str = ""  # file the SLO came from, for messages
    # A calendar window: the SLO window's numbers cover the period so far (``period``), and ``window``
    # is its nominal length, which the tiers and the generated rules use.
    calendar: CalendarWindow | None = None

    @property
    def id(self) -> str:
        return f"{self.service}/{self.name}"

    def period(self, at: datetime) -> Period | None:
        """The calendar period ``at`` falls in; None for a rolling window."""
        return None if self.calendar is None else self.calendar.period(at)

    @property
    def window_name(self) -> str:
        """How messages name the SLO window: ``30d``, or ``calendar month (Europe/Berlin)``."""
        if self.calendar is None:
            return format_duration(self.window)
        return f"calendar {self.calendar.calendar} ({self.calendar.timezone})"

    # Cached: the engine asks for these for every window of every SLO in every cycle, and Fraction
    # arithmetic is slow. The model is frozen, so they cannot go stale.
    @cached_property
    def objective_ratio(self) -> Fraction:
        return Fraction(self.objective) / 100

    @cached_property
    def error_budget(self) -> Fraction:
        """1 - objective, exact: 99.9 gives Fraction(1, 1000)."""
        return 1 - self.objective_ratio

    @cached_property
    def error_budget_float(self) -> float:
        return float(self.error_budget)

    def windows(self) -> tuple[timedelta, ...]:
        """Every window the engine needs, shortest first: each tier's pair and the SLO window."""
        return self._windows

    @cached_property
    def _windows(self) -> tuple[timedelta, ...]:
        found = {self.window}
        for tier in self.tiers:
            found.update((tier.long_window, tier.short_window))
        if self.canary is not None:
            found.update(self.canary.windows)
            found.add(self.canary.baseline_window)
        return tuple(sorted(found))


# Events a window needs before its burn rate counts: one, so 0/0 (no traffic) is never judged.
# Low-traffic services should raise it (SRE workbook ch. 5, "Low-Traffic Services").
DEFAULT_MIN_EVENTS = 1.0


def resolve_tiers(
    specs: tuple[TierSpec, ...] | None, period: timedelta, error_budget: Fraction | None = None
) -> tuple[BurnTier, ...]:
    if specs is None:
        return default_tiers(period)
    resolved = []
    for index, spec in enumerate(specs):
        if spec.long_window > period:
            raise FieldError(
                "tiers",
                f"tier long_window {format_duration(spec.long_window)} is longer than the SLO window "
                f"{format_duration(period)}; use a shorter long_window or a longer SLO window",
            )
        if spec.budget_percent is not None:
            fraction = Fraction(Decimal(repr(spec.budget_percent))) / 100
            rate = burn_rate_for(fraction, period, spec.long_window)
        else:
            assert spec.burn_rate is not None  # the model validator guarantees exactly one
            rate = spec.burn_rate
            fraction = Fraction(rate) * Fraction(spec.long_window / period)
        if error_budget is not None and rate * error_budget > 1:
            # The error ratio cannot pass 100 %: a burn rate above 1/budget asks for more than that.
            field = "burn_rate" if spec.budget_percent is None else "budget_percent"
            raise FieldError(
                f"tiers[{index}].{field}",
                f"a {rate:,.6g}x burn needs an error ratio of {rate * float(error_budget) * 100:,.6g}%, "
                f"which no service can reach, so this tier can never fire; at this objective the "
                f"highest burn rate is {float(1 / error_budget):,.6g}x (all requests failing); use a "
                "lower one, e.g. 14.4 (the workbook's fast page)",
            )
        resolved.append(
            BurnTier(
                severity=spec.severity,
                long_window=spec.long_window,
                short_window=spec.short_window,
                burn_rate=rate,
                budget_fraction=float(fraction),
            )
        )
    return tuple(resolved)


class FieldError(ValueError):
    """A problem with one field of an SLO entry that only shows once the entry is resolved."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# The canary's own short window besides the fast page tier's: at the usual 15 s scrape a 1m rate holds
# four samples, the fewest the Prometheus docs advise, and a failing canary shows in it 5x sooner
# than in 5m.
CANARY_FAST_WINDOW = timedelta(minutes=1)


def _fastest_page_tier(tiers: tuple[BurnTier, ...]) -> BurnTier:
    pages = [t for t in tiers if t.severity is Severity.PAGE] or list(tiers)
    return max(pages, key=lambda t: (t.burn_rate, -t.short_window.total_seconds()))


def _mentions_label(query: str, label: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(label)}(?![A-Za-z0-9_])", query) is not None


def resolve_canary(
    spec: CanarySpec,
    sli: SLI,
    tiers: tuple[BurnTier, ...],
    *,
    period: timedelta = DEFAULT_WINDOW,
    error_budget: Fraction | None = None,
) -> CanaryPolicy:
    """Fill the canary block's defaults from the SLO; ``FieldError`` names what cannot work."""
    _check_shadow(spec)
    if sli.raw is not None:
        raise FieldError(
            "canary",
            "a canary needs events to count per version; a raw error-ratio query cannot be split by "
            "version and summed: write the SLI as sli.events (error_query and total_query) or sli.latency",
        )
    if sli.events is not None:
        for name, query in (("error_query", sli.events.error_query), ("total_query", sli.events.total_query)):
            if not _mentions_label(query, spec.label):
                raise FieldError(
                    f"sli.events.{name}",
                    f"the canary label {spec.label!r} does not appear in the query, so its answer cannot "
                    f"tell versions apart; group by it, e.g. "
                    f"sum by ({spec.label}) (rate(...[{{{{.window}}}}]))",
                )
    if spec.burn_limit is not None and error_budget is not None and spec.burn_limit * error_budget > 1:
        raise FieldError(
            "canary.burn_limit",
            f"a {spec.burn_limit:,.6g}x burn limit needs an error ratio of "
            f"{spec.burn_limit * float(error_budget) * 100:,.6g}%, which no version can reach, so no "
            f"canary would ever be halted; at this objective the highest is {float(1 / error_budget):,.6g}x; "
            "use a lower one, or leave burn_limit out for the fastest page tier's",
        )
    fastest = _fastest_page_tier(tiers)
    consumption = _budget_consumption(spec, period, error_budget)
    windows = spec.windows if consumption is None else (consumption.within,)
    if windows is None:
        windows = tuple({CANARY_FAST_WINDOW, fastest.short_window})
    return CanaryPolicy(
        label=spec.label,
        baseline=spec.baseline,
        windows=tuple(sorted(windows)),
        baseline_window=fastest.long_window,
        burn_limit=(consumption or fastest).burn_rate if spec.burn_limit is None else spec.burn_limit,
        confidence=spec.confidence,
        method=spec.method,
        compare_baseline=spec.compare_baseline and spec.kind != "shadow",
        baseline_confidence=spec.baseline_confidence,
        streak=spec.streak,
        cooldown=spec.cooldown,
        resolve_after=spec.resolve_after,
        promote_min_events=spec.promote_min_events,
        on_burn=spec.on_burn,
        notify=spec.notify,
        affected_by=spec.affected_by,
        kind=spec.kind,
        latency=spec.latency,
        budget_consumed=consumption,
    )


def _budget_consumption(
    spec: CanarySpec, period: timedelta, error_budget: Fraction | None
) -> BudgetConsumption | None:
    """``budget_consumed`` as a burn limit over its ``within`` window: fraction x period / lookback."""
    rule = spec.budget_consumed
    if rule is None:
        return None
    for name, what in (("windows", "window (its 'within')"), ("burn_limit", "burn limit")):
        if getattr(spec, name) is not None:
            raise FieldError(
                f"canary.{name}",
                f"budget_consumed sets the canary's {what}; remove {name}, or remove budget_consumed "
                "and give burn_limit and windows directly",
            )
    if rule.within > period:
        raise FieldError(
            "canary.budget_consumed.within",
            f"within ({format_duration(rule.within)}) is longer than the SLO window "
            f"({format_duration(period)}) whose budget it is a share of; use a shorter lookback, e.g. 10m",
        )
    fraction = Fraction(Decimal(repr(rule.percent))) / 100
    rate = burn_rate_for(fraction, period, rule.within)
    if error_budget is not None and rate * error_budget >= 1:
        raise FieldError(
            "canary.budget_consumed.percent",
            f"consuming {rule.percent:g}% of the {format_duration(period)} budget within "
            f"{format_duration(rule.within)} takes a {rate:,.4g}x burn, an error ratio of "
            f"{rate * float(error_budget) * 100:,.4g}%, which no version can reach; percent is a share of "
            "the error budget, not of requests (the article's '0.05% of that budget' is percent: 0.05)",
        )
    return BudgetConsumption(fraction=float(fraction), within=rule.within, period=period, burn_rate=rate)


def _check_shadow(spec: CanarySpec) -> None:
    """A shadow serves no user: nothing to halt, and no baseline among the versions its SLI counts."""
    if spec.kind != "shadow":
        return
    if spec.on_burn:
        raise FieldError(
            "canary.on_burn",
            "a shadow (kind: shadow) serves no user, so there is no traffic to halt or roll back: a "
            "burning shadow opens an incident and the promotion gates refuse that version; move these "
            "actions to notify, or remove kind: shadow if the version takes users' traffic",
        )
    if spec.baseline is not None:
        raise FieldError(
            "canary.baseline",
            "a shadow's SLI counts mismatches of the shadowed versions only (the primary is what they "
            "are compared with), so every version is judged on its own; remove baseline",
        )
    if spec.compare_baseline and "compare_baseline" in spec.model_fields_set:
        raise FieldError(
            "canary.compare_baseline",
            "a shadow has no baseline version to compare with (its mismatches are already against "
            "the primary); remove compare_baseline",
        )


def resolve_freeze(own: FreezeSpec | None, file: FreezeSpec | None, shadow: bool) -> FreezePolicy | None:
    """The SLO's own ``freeze:``, else its file's; a shadow does not inherit its file's policy, since
    its mismatches reach no user and its budget is not the users' (workbook: budget spent by what
    users never see does not count)."""
    spec, inherited = (own, False) if own is not None else (None if shadow else file, True)
    if spec is None or not spec.enabled:
        return None
    return FreezePolicy(below=spec.below, exceptions=dict(spec.exceptions), inherited=inherited)


def native_only_fields(spec: SLOSpec) -> list[str]:
    """The budgetguard/v1 additions a ``prometheus/v1`` SLO uses (they would break it for Sloth)."""
    return [name for name in _NATIVE_ONLY_FIELDS if name in spec.model_fields_set]


def build_slo(document: SLOFile, spec: SLOSpec, source: str = "") -> SLO:
    """Turn one validated entry of a file into an engine-ready SLO (ValueError on tier problems)."""
    calendar, window = (
        (spec.window, spec.window.nominal_length)
        if isinstance(spec.window, CalendarWindow)
        else (None, spec.window or DEFAULT_WINDOW)
    )
    tiers = resolve_tiers(spec.tiers, window, 1 - Fraction(spec.objective) / 100)
    if calendar is not None:
        _check_rolling_tiers(tiers, calendar)
    if not tiers:
        raise FieldError(
            "tiers",
            f"no default burn-rate tier fits in a {format_duration(window)} SLO window (the shortest long "
            "window is 1h); declare tiers for this SLO or use a window of at least 1h",
        )
    canary = (
        None
        if spec.canary is None
        else resolve_canary(
            spec.canary, spec.sli, tiers, period=window, error_budget=1 - Fraction(spec.objective) / 100
        )
    )
    return SLO(
        service=document.service,
        name=spec.name,
        objective=spec.objective,
        window=window,
        sli=spec.sli,
        tiers=tiers,
        min_events=DEFAULT_MIN_EVENTS if spec.min_events is None else spec.min_events,
        description=spec.description,
        labels={**document.labels, **spec.labels},
        alerting=spec.alerting,
        canary=canary,
        freeze=resolve_freeze(spec.freeze, document.freeze, canary is not None and canary.shadow),
        source=source,
        calendar=calendar,
    )


def _check_rolling_tiers(tiers: tuple[BurnTier, ...], calendar: CalendarWindow) -> None:
    """A calendar SLO's tiers roll; one as long as the nominal period would be read as the period."""
    nominal = calendar.nominal_length
    for tier in tiers:
        if tier.long_window >= nominal:
            raise FieldError(
                "tiers",
                f"tier long_window {format_duration(tier.long_window)} is as long as the calendar "
                f"{calendar.calendar}'s nominal {format_duration(nominal)}; tiers are rolling windows "
                "shorter than the period: use a shorter long_window (the defaults stop at 3d)",
            )


def build_slos(document: SLOFile, source: str = "") -> list[SLO]:
    return [build_slo(document, spec, source) for spec in document.slos]
