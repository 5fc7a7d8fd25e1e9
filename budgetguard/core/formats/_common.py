"""What every reader shares: a place in a foreign document, and a draft that becomes native SLOs.

A reader walks a foreign document through ``Field``s (a document and a path in it), which read values
and refuse them with the file, line, field and fix. It writes a ``Draft``: the ``budgetguard/v1``
document the foreign one means, plus, for every native field it wrote, the foreign field the value came
from. ``finish`` validates the draft with ``SLOFile`` and ``build_slo`` (the very rules a native file
meets) and reports what they refuse at the foreign field, so a user never reads about a field of a file
they did not write.

Pure: no I/O and no YAML. Lines come from the ``line_of`` callback the loader hands in with each
document.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, TypeVar

from pydantic import ValidationError

from budgetguard.core.durations import parse_duration
from budgetguard.core.errors import SpecProblem
from budgetguard.core.spec import NATIVE_VERSION, SLO, FieldError, SLOFile, build_slo

Loc = tuple[str | int, ...]
LineOf = Callable[[Loc], int | None]
T = TypeVar("T")


def _no_lines(loc: Loc) -> int | None:
    return None


def field_path(loc: Sequence[str | int]) -> str:
    """``("spec", "objectives", 0, "target")`` -> ``spec.objectives[0].target``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, eq=False)  # a document is itself, not its content
class Document:
    """One parsed YAML document of a foreign format, where it came from, and how to find its lines."""

    data: Any
    source: str
    line_of: LineOf = _no_lines

    @property
    def api_version(self) -> str:
        value = self.data.get("apiVersion") if isinstance(self.data, Mapping) else None
        return str(value) if value is not None else ""

    @property
    def kind(self) -> str:
        value = self.data.get("kind") if isinstance(self.data, Mapping) else None
        return str(value) if value is not None else ""

    @property
    def name(self) -> str | None:
        metadata = self.data.get("metadata") if isinstance(self.data, Mapping) else None
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        return name if isinstance(name, str) and name else None

    @property
    def root(self) -> Field:
        return Field(self, ())


class Refused(Exception):
    """The value at hand cannot be read; ``problems`` say where, why and how to fix it."""

    def __init__(self, *problems: SpecProblem) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


_MISSING = object()


@dataclass(frozen=True)
class Field:
    """A path in a document: reads the value there, or refuses it naming file, line and field."""

    document: Document
    loc: Loc = ()
    slo: str | None = None  # the SLO the value belongs to, for messages

    def __truediv__(self, part: str | int) -> Field:
        return Field(self.document, (*self.loc, part), self.slo)

    def for_slo(self, name: str | None) -> Field:
        return Field(self.document, self.loc, name)

    @cached_property
    def _raw(self) -> Any:
        current: Any = self.document.data
        for part in self.loc:
            found = (isinstance(part, int) and isinstance(current, list) and part < len(current)) or (
                isinstance(part, str) and isinstance(current, Mapping) and part in current
            )
            if not found:
                return _MISSING
            current = current[part]
        return current

    @property
    def exists(self) -> bool:
        """Present and not null (YAML ``key:`` with nothing after it counts as absent)."""
        return self._raw is not _MISSING and self._raw is not None

    @property
    def value(self) -> Any:
        return None if self._raw is _MISSING else self._raw

    @property
    def path(self) -> str:
        return field_path(self.loc)

    def problem(self, message: str, fix: str = "") -> SpecProblem:
        return SpecProblem(
            self.document.source,
            message,
            fix,
            slo=self.slo,
            field=self.path or None,
            line=self.document.line_of(self.loc),
        )

    def refusal(self, message: str, fix: str = "") -> Refused:
        """The exception that refuses the value here: ``raise field.refusal(...)``."""
        return Refused(self.problem(message, fix))

    # --- typed reads ------------------------------------------------------------------------------

    def required(self) -> Field:
        if not self.exists:
            raise self.refusal(f"required field {self.loc[-1]!r} is missing", "add it")
        return self

    def mapping(self, allowed: Collection[str] | None = None, *, what: str = "") -> Mapping[str, Any]:
        """The mapping here (empty when absent); with ``allowed``, every other key is refused at once."""
        if not self.exists:
            return {}
        value = self.value
        if not isinstance(value, Mapping):
            raise self.refusal("must be a mapping of names to values", "write it as key: value lines")
        if allowed is not None:
            unknown = [key for key in value if key not in allowed]
            if unknown:
                where = f" in {what}" if what else ""
                raise Refused(
                    *(
                        (self / str(key)).problem(
                            f"unknown field {key!r}{where}",
                            f"remove it or fix its spelling; budgetguard reads here: {', '.join(allowed)}",
                        )
                        for key in unknown
                    )
                )
        return value

    def items(self) -> list[Field]:
        """The entries of the list here (none when absent)."""
        if not self.exists:
            return []
        if not isinstance(self.value, list):
            raise self.refusal("must be a list", "write it as a YAML list (lines starting with '- ')")
        return [self / index for index in range(len(self.value))]

    def text(self) -> str:
        value = self.required().value
        if not isinstance(value, str) or not value.strip():
            raise self.refusal("must be a non-empty string", "write it as a string (quote it)")
        return value

    def optional_text(self, default: str = "") -> str:
        return self.text() if self.exists else default

    def description(self) -> str:
        """Free text that may be empty or absent (both give "")."""
        if not self.exists:
            return ""
        if not isinstance(self.value, str):
            raise self.refusal("must be a string", "write it as a string (quote it)")
        return self.value

    def boolean(self, default: bool) -> bool:
        if not self.exists:
            return default
        if not isinstance(self.value, bool):
            raise self.refusal("must be true or false", "write true or false")
        return self.value

    def number(self) -> Decimal:
        """A number as written: ``0.999`` stays exactly 999/1000 (YAML floats go through repr)."""
        value = self.required().value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.refusal("must be a number", "write a number, e.g. 99.9")
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise self.refusal(f"{value!r} is not a number", "write a number, e.g. 99.9") from exc
        if not number.is_finite():
            raise self.refusal(f"{value!r} is not a finite number", "write a number, e.g. 99.9")
        return number

    def duration(self) -> timedelta:
        text = self.text()
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise self.refusal(str(exc), "write a duration such as 5m, 1h, 28d or 4w") from exc

    def strings(self) -> dict[str, str]:
        """Names to string values, such as labels (the native model checks the names)."""
        out: dict[str, str] = {}
        for key, value in self.mapping().items():
            if not isinstance(value, str):
                raise (self / str(key)).refusal("the value must be a string", "quote it")
            out[str(key)] = value
        return out


class Collector:
    """Reads several independent parts of one object, keeping every problem rather than the first."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def attempt(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except Refused as exc:
            self.problems.extend(exc.problems)
            return None


def percent(number: Decimal) -> Decimal:
    """A ratio as a percentage without a spurious exponent or trailing zeros: 0.999 -> 99.9."""
    value = number * 100
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


# --- drafts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sourced:
    """A piece of a native document (an SLI, a tier) and where each of its fields came from."""

    value: dict[str, Any]
    origins: dict[Loc, Field]

    def under(self, prefix: Loc) -> dict[Loc, Field]:
        return {(*prefix, *loc): where for loc, where in self.origins.items()}


@dataclass
class Draft:
    """A ``budgetguard/v1`` document being written from a foreign one, with the origin of its fields.

    ``describe`` says what it was translated from (``OpenSLO SLO 'checkout-availability'``); ``at`` is
    the foreign object itself, where problems without a closer origin are reported.
    """

    describe: str
    at: Field
    service: str
    labels: dict[str, str] = field(default_factory=dict)
    slos: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[Loc, Field] = field(default_factory=dict)
    notes: list[SpecProblem] = field(default_factory=list)

    def add_slo(self, slo: dict[str, Any], origins: Mapping[Loc, Field]) -> None:
        """Append one native SLO entry; ``origins`` are keyed by paths inside the entry."""
        index = len(self.slos)
        self.slos.append(slo)
        self.origins.update({("slos", index, *loc): where for loc, where in origins.items()})

    def data(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": NATIVE_VERSION, "service": self.service}
        if self.labels:
            document["labels"] = self.labels
        document["slos"] = self.slos
        return document

    def where(self, loc: Sequence[str | int]) -> Field:
        """The foreign field a native path came from: its own origin, or its nearest recorded parent's."""
        for end in range(len(loc), -1, -1):
            found = self.origins.get(tuple(loc[:end]))
            if found is not None:
                return found
        return self.at


@dataclass(frozen=True)
class Translation:
    """A foreign document turned into a validated native one, and the SLOs built from it."""

    describe: str
    source: str
    document: SLOFile
    slos: tuple[SLO, ...]
    notes: tuple[SpecProblem, ...]


# pydantic error types our own validators do not explain; value errors carry their fix in the message.
_FIXES = {
    "string_type": "write it as a string (quote it)",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "decimal_parsing": "write a number, e.g. 99.9",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
}


def finish(draft: Draft) -> tuple[Translation | None, list[SpecProblem]]:
    """Validate a draft by the native rules; every problem is reported at its foreign field."""
    try:
        document = SLOFile.model_validate(draft.data())
    except ValidationError as exc:
        problems = []
        errors = exc.errors(include_url=False)
        for error in errors:
            loc = tuple(error["loc"])
            # a list whose entries failed is also "too short"; the entries' own errors say it all
            if error["type"] == "too_short" and any(
                tuple(e["loc"])[: len(loc)] == loc != tuple(e["loc"]) for e in errors
            ):
                continue
            message = str(error["msg"]).removeprefix("Value error, ")
            fix = "" if error["type"] == "value_error" else _FIXES.get(error["type"], "")
            problems.append(_problem_at(draft, loc, message, fix))
        return None, problems
    slos: list[SLO] = []
    problems = []
    for index, spec in enumerate(document.slos):
        try:
            slos.append(build_slo(document, spec, draft.at.document.source))
        except FieldError as exc:
            problems.append(_problem_at(draft, ("slos", index, *exc.field.split(".")), str(exc), ""))
    if problems:
        return None, problems
    return Translation(
        draft.describe, draft.at.document.source, document, tuple(slos), tuple(draft.notes)
    ), []


def _problem_at(draft: Draft, loc: Loc, message: str, fix: str) -> SpecProblem:
    where = draft.where(loc)
    slo = where.slo
    if slo is None and len(loc) >= 2 and loc[0] == "slos" and isinstance(loc[1], int):
        slo = str(draft.slos[loc[1]].get("name", f"#{loc[1] + 1}"))
    return SpecProblem(
        where.document.source,
        message,
        fix,
        slo=slo,
        field=where.path or None,
        line=where.document.line_of(where.loc),
    )


def note(at: Field, message: str) -> SpecProblem:
    """Something read and accepted that has no effect in budgetguard (listed by check and convert)."""
    return at.problem(message)
