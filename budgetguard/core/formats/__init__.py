"""Readers for other tools' SLO files: OpenSLO v1, Sloth's Kubernetes CRD and Pyrra, as native SLOs.

A file of these formats sits beside native ones and loads with no flag: the loader parses the YAML and
hands every document with an ``apiVersion`` to ``translate``, all documents of one load together so
that OpenSLO references resolve across files. Each reader writes the ``budgetguard/v1`` document the
foreign one means; the native model and ``build_slo`` validate it by the same rules as a native file,
and whatever a format says that budgetguard cannot honour is refused with file, line, field and fix,
never dropped. ``budgetguard convert`` prints the native documents, for users who migrate.

Pure: parsed YAML in (with a callback for line numbers), native documents and SLOs out. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from budgetguard.core.errors import SpecProblem
from budgetguard.core.formats import openslo, pyrra, sloth_k8s
from budgetguard.core.formats._common import Document, Draft, Translation, finish
from budgetguard.core.spec import SLO, SLOFile

__all__ = ["FORMATS", "Document", "Translated", "Translation", "is_foreign", "native_data", "translate"]

# apiVersion -> the tool whose format it is, for messages and docs.
FORMATS = {
    openslo.API_VERSION: "OpenSLO",
    sloth_k8s.API_VERSION: "Sloth (Kubernetes CRD PrometheusServiceLevel)",
    pyrra.API_VERSION: "Pyrra (ServiceLevelObjective)",
}
_OLDER = {
    "openslo/v1alpha": "OpenSLO v1alpha is not read; write the SLO in openslo/v1",
    "openslo.com/v2alpha": "OpenSLO v2alpha is a draft; write the SLO in openslo/v1",
}


def is_foreign(data: Any) -> bool:
    """A Kubernetes-style document (``apiVersion``), not a native or Sloth ``version:`` one."""
    return isinstance(data, Mapping) and "apiVersion" in data and "version" not in data


@dataclass(frozen=True)
class Translated:
    """Every foreign document of one load: the native documents, their SLOs, problems and notes."""

    translations: tuple[Translation, ...]
    problems: tuple[SpecProblem, ...]
    notes: tuple[SpecProblem, ...]

    @property
    def slos(self) -> list[SLO]:
        return [slo for translation in self.translations for slo in translation.slos]


def translate(documents: Sequence[Document]) -> Translated:
    """Translate foreign documents (all of one load, for OpenSLO's cross-file references), in order."""
    catalog = openslo.Catalog([d for d in documents if d.api_version == openslo.API_VERSION])
    translations: list[Translation] = []
    problems: list[SpecProblem] = []
    notes: list[SpecProblem] = []
    for document in documents:
        drafts, found = _read(document, catalog)
        problems.extend(found)
        for draft in drafts:
            translation, found = finish(draft)
            problems.extend(found)
            if translation is not None:
                translations.append(translation)
                notes.extend(translation.notes)
    problems.extend(catalog.problems)
    notes.extend(catalog.notes)
    return Translated(tuple(translations), tuple(problems), tuple(notes))


def _read(document: Document, catalog: openslo.Catalog) -> tuple[list[Draft], list[SpecProblem]]:
    version = document.api_version
    if version == openslo.API_VERSION:
        return openslo.read(document, catalog)
    if version == sloth_k8s.API_VERSION:
        return sloth_k8s.read(document)
    if version == pyrra.API_VERSION:
        return pyrra.read(document)
    read = ", ".join(f"{v} ({tool})" for v, tool in FORMATS.items())
    return [], [
        (document.root / "apiVersion").problem(
            _OLDER.get(
                version,
                f"apiVersion {version!r} (kind {document.kind or '?'}) is not an SLO format "
                "budgetguard reads",
            ),
            f"budgetguard reads {read}, and 'version: budgetguard/v1' or 'version: prometheus/v1' files",
        )
    ]


def native_data(document: SLOFile) -> dict[str, Any]:
    """A native document as plain data to write as YAML: defaults left out, objectives as numbers."""
    data: dict[str, Any] = document.model_dump(mode="json", exclude_defaults=True)
    for entry, spec in zip(data["slos"], document.slos, strict=True):
        entry["objective"] = _number(spec.objective)
    return data


def _number(value: Decimal) -> float | int | str:
    """The YAML number that reads back as exactly ``value``; the exact text when no float does."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)
