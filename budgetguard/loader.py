"""Reading SLO files: paths in, validated SLOs and every problem found out.

Owns file discovery (files and directories, ``*.yaml``/``*.yml``), YAML parsing (several documents per
file) and the translation of validation errors into ``SpecProblem``s that name the file, the line, the
SLO and the field, and say how to fix it. It never stops at the first problem: a user fixing a file
wants the whole list.

Documents with an ``apiVersion`` (OpenSLO, Sloth's CRD, Pyrra) go to ``budgetguard.core.formats``, all those
of one ``load_paths`` call together, since OpenSLO objects refer to each other across files.

YAML is parsed once per file, by libyaml's C parser when PyYAML has it (``yaml.__with_libyaml__``, true
for the wheels PyPI ships): its nodes carry the line marks problems cite, and the documents are built
from those same nodes. The pure-Python parser took ~10 s of CPU for 10,000 SLOs (#14).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from budgetguard.core import formats
from budgetguard.core.errors import SpecProblem
from budgetguard.core.spec import (
    NATIVE_VERSION,
    SLO,
    SLOTH_VERSION,
    UNION_TAGS,
    FieldError,
    SLOFile,
    build_slo,
    native_only_fields,
)

SUFFIXES = (".yaml", ".yml")
# libyaml's parser with the safe constructor; the same classes in pure Python where libyaml is missing.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadResult:
    slos: list[SLO] = field(default_factory=list)
    problems: list[SpecProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # Fields of other formats that were read but have no effect in budgetguard (not problems).
    notes: list[SpecProblem] = field(default_factory=list)
    # The valid native and Sloth prometheus/v1 documents, with their file (``budgetguard convert``).
    documents: list[tuple[str, SLOFile]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _hidden(relative: Path) -> bool:
    """Below a directory, names starting with a dot are not SLO files: a Kubernetes ConfigMap volume
    keeps each file twice, as ``name -> ..data/name`` and in ``..<timestamp>/name``, and ``.git`` and
    editors' swap files live there too. A hidden path named on the command line is still read."""
    return any(part.startswith(".") for part in relative.parts)


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[SpecProblem]]:
    """Expand directories into their SLO files (recursively, sorted, hidden names skipped); report paths that
    do not exist."""
    found: list[Path] = []
    problems: list[SpecProblem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in SUFFIXES and p.is_file() and not _hidden(p.relative_to(path))
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            problems.append(
                SpecProblem(
                    str(path),
                    "no such file or directory",
                    "give the path of an SLO file or of a directory of them",
                )
            )
    return found, problems


# Where an action's ``${name}`` placeholders come from: the SLO's labels plus these.
CONTEXT_KEYS = frozenset({"service", "slo", "canary_label", "canary", "baseline"})

# Action name -> the placeholders its templates use; None when no config was given (names unchecked).
KnownActions = Mapping[str, frozenset[str]]


def load_paths(paths: Iterable[str | Path], actions: KnownActions | None = None) -> LoadResult:
    return _load_paths(paths, actions)[0]


def _load_paths(
    paths: Iterable[str | Path], actions: KnownActions | None
) -> tuple[LoadResult, formats.Translated]:
    paths = list(paths)
    files, problems = discover(paths)
    result = LoadResult(problems=problems)
    foreign: list[formats.Document] = []
    for path in files:
        result.files.append(str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            result.problems.append(SpecProblem(str(path), f"cannot read the file: {exc}"))
            continue
        slos, file_problems = _load_text(text, str(path), actions, foreign, result.documents)
        result.slos.extend(slos)
        result.problems.extend(file_problems)
    translated = formats.translate(foreign)
    result.slos.extend(translated.slos)
    result.problems.extend(translated.problems)
    result.notes.extend(translated.notes)
    if not files and not problems:
        result.problems.append(
            SpecProblem(
                ", ".join(map(str, paths)),
                "no SLO files found",
                "add *.yaml files with 'version: budgetguard/v1'",
            )
        )
    _check_duplicates(result)
    return result, translated


def _check_duplicates(result: LoadResult) -> None:
    seen: dict[str, SLO] = {}
    for slo in result.slos:
        if slo.id in seen:
            result.problems.append(
                SpecProblem(
                    slo.source,
                    f"SLO id {slo.id!r} is declared twice (also in {seen[slo.id].source})",
                    "give each SLO of a service a unique name",
                    slo=slo.name,
                    field="name",
                )
            )
        else:
            seen[slo.id] = slo


def load_text(
    text: str, source: str, actions: KnownActions | None = None
) -> tuple[list[SLO], list[SpecProblem]]:
    """Validate every YAML document of one file (OpenSLO references resolve within the file)."""
    foreign: list[formats.Document] = []
    slos, problems = _load_text(text, source, actions, foreign, [])
    translated = formats.translate(foreign)
    return slos + translated.slos, problems + list(translated.problems)


def _load_text(
    text: str,
    source: str,
    actions: KnownActions | None,
    foreign: list[formats.Document],
    native: list[tuple[str, SLOFile]],
) -> tuple[list[SLO], list[SpecProblem]]:
    """Validate the native documents of one file (appended to ``native`` when valid); append the other
    formats' to ``foreign``. A top-level YAML list of foreign objects (OpenSLO's tools write files so) is
    read as that many documents."""
    parsed = parse_yaml(text, source)
    if isinstance(parsed, SpecProblem):
        return [], [parsed]
    slos: list[SLO] = []
    problems: list[SpecProblem] = []
    for node, document in parsed:
        if document is None:
            continue
        if formats.is_foreign(document):
            foreign.append(formats.Document(document, source, partial(_line, node)))
            continue
        if isinstance(document, list) and document and all(formats.is_foreign(item) for item in document):
            foreign.extend(
                formats.Document(item, source, partial(_line_in, node, index))
                for index, item in enumerate(document)
            )
            continue
        doc_slos, doc_problems = load_document(document, source, node, actions, native)
        slos.extend(doc_slos)
        problems.extend(doc_problems)
    if not parsed:
        problems.append(SpecProblem(source, "the file is empty", "declare a service and its slos"))
    return slos, problems


def parse_yaml(text: str, source: str) -> list[tuple[yaml.Node | None, Any]] | SpecProblem:
    """Each YAML document of ``text`` as its node (for line numbers) and its value, from ONE parse (the
    value is constructed from the composed node, as ``yaml.safe_load_all`` does internally), or the one
    problem that stops reading the file.

    Besides syntax errors, two inputs make PyYAML fail in ways of its own: nesting deeper than Python's
    recursion allows (a few hundred levels) and integers longer than Python converts (4,300 digits).
    No SLO file needs either, so both are refused like a syntax error, with the line when it is known.
    """
    loader = _Loader(text)
    node: yaml.Node | None = None
    try:
        out: list[tuple[yaml.Node | None, Any]] = []
        while loader.check_node():
            node = loader.get_node()
            out.append((node, loader.construct_document(node)))
        return out
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(getattr(exc, "problem", "")):
            return _too_deep(source)  # libyaml's own limit (1,000 levels), before Python's recursion
        mark = getattr(exc, "problem_mark", None)
        return SpecProblem(
            source,
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            "fix the YAML syntax (indentation, quotes, colons)",
            line=mark.line + 1 if mark is not None else None,
        )
    except RecursionError:
        return _too_deep(source)
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        return SpecProblem(
            source,
            f"a value cannot be read as a number: {str(exc).split(';')[0]}",
            "write numbers with at most a few dozen digits (e.g. 99.9, 50, 1e6)",
            line=None if node is None else _long_number_line([node]),
        )
    finally:
        loader.dispose()


def _too_deep(source: str) -> SpecProblem:
    return SpecProblem(
        source,
        "the YAML is nested too deeply to read (hundreds of levels of lists or mappings)",
        "an SLO file nests a few levels; look for runaway '[' or '{'",
    )


def _long_number_line(nodes: Sequence[yaml.Node]) -> int | None:
    """The line of the first integer scalar too long to convert, found in the composed nodes."""
    pending: list[yaml.Node] = list(nodes)
    while pending:
        node = pending.pop(0)
        if isinstance(node, yaml.ScalarNode):
            if node.tag.endswith(":int") and len(node.value) > 4000:
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(v for pair in node.value for v in pair)
    return None


def load_document(
    document: Any,
    source: str,
    node: yaml.Node | None = None,
    actions: KnownActions | None = None,
    native: list[tuple[str, SLOFile]] | None = None,
) -> tuple[list[SLO], list[SpecProblem]]:
    if not isinstance(document, dict):
        return [], [
            SpecProblem(
                source,
                "a document must be a mapping with version, service and slos",
                "start the file with 'version: budgetguard/v1'",
                line=_line(node, ()),
            )
        ]
    version = document.get("version")
    if version not in (NATIVE_VERSION, SLOTH_VERSION):
        hint = f"use 'version: {NATIVE_VERSION}' (or '{SLOTH_VERSION}' for a file written for Sloth)"
        what = "the 'version' field is missing" if version is None else f"unknown version {version!r}"
        return [], [SpecProblem(source, what, hint, field="version", line=_line(node, ("version",)))]
    try:
        parsed = SLOFile.model_validate(document)
    except ValidationError as exc:
        return [], _problems_from(exc, document, source, node)
    problems = []
    if version == SLOTH_VERSION:
        for index, spec in enumerate(parsed.slos):
            for name in native_only_fields(spec):
                problems.append(
                    SpecProblem(
                        source,
                        f"{name!r} is a {NATIVE_VERSION} addition that Sloth's {SLOTH_VERSION} rejects",
                        f"change the file's version to {NATIVE_VERSION}, or remove {name!r}",
                        slo=spec.name,
                        field=f"slos[{index}].{name}",
                        line=_line(node, ("slos", index, name)),
                    )
                )
    slos = []
    for index, spec in enumerate(parsed.slos):
        try:
            slos.append(build_slo(parsed, spec, source))
        except FieldError as exc:
            path = ("slos", index, *_split_field(exc.field))
            problems.append(
                SpecProblem(
                    source,
                    str(exc),
                    slo=spec.name,
                    field=f"slos[{index}].{exc.field}",
                    line=_line(node, path),
                )
            )
    if actions is not None:
        for index, slo in enumerate(slos):
            problems.extend(_action_problems(slo, index, actions, source, node))
    if problems:
        return [], problems
    if native is not None:
        native.append((source, parsed))
    return slos, []


def _action_problems(
    slo: SLO, index: int, actions: KnownActions, source: str, node: yaml.Node | None
) -> Iterator[SpecProblem]:
    """Every action a canary names must be declared, and its templates must only use known names."""
    if slo.canary is None:
        return
    available = CONTEXT_KEYS | set(slo.labels)
    for key in ("on_burn", "notify"):
        for position, name in enumerate(getattr(slo.canary, key)):
            where = ("slos", index, "canary", key, position)
            if name not in actions:
                declared = ", ".join(sorted(actions)) or "none"
                yield SpecProblem(
                    source,
                    f"action {name!r} is not declared in the config file's actions (declared: {declared})",
                    "declare it under actions: in the config file, or fix the name",
                    slo=slo.name,
                    field=f"slos[{index}].canary.{key}[{position}]",
                    line=_line(node, where),
                )
                continue
            unknown = sorted(actions[name] - available)
            if unknown:
                yield SpecProblem(
                    source,
                    f"action {name!r} fills ${{{unknown[0]}}}, which this SLO cannot provide "
                    f"(it has: {', '.join(sorted(available))})",
                    f"add the label {unknown[0]!r} to the SLO's labels, or change the action's template",
                    slo=slo.name,
                    field=f"slos[{index}].canary.{key}[{position}]",
                    line=_line(node, where),
                )


# --- validation errors to problems -----------------------------------------------------------------

_FIXES = {
    "extra_forbidden": "remove it or fix its spelling",
    "missing": "add it",
    "string_type": "write it as a string (quote it)",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .inf or .nan), e.g. 14.4",
    "decimal_parsing": "write a number, e.g. 99.9",
    "decimal_type": "write a number, e.g. 99.9",
    "dict_type": "write a mapping of names to values",
    "tuple_type": "write a list",
    "bool_type": "write true or false",
    "too_short": "add at least one entry",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "enum": "use one of the allowed values",
}


def _problems_from(
    exc: ValidationError, document: dict[str, Any], source: str, node: yaml.Node | None
) -> list[SpecProblem]:
    errors = exc.errors(include_url=False)
    locations = [_loc(e) for e in errors]
    problems = []
    for error in errors:
        loc = _loc(error)
        # pydantic reports a list whose items failed as "too short" too; the item errors say it all.
        if error["type"] == "too_short" and any(
            other[: len(loc)] == loc and other != loc for other in locations
        ):
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        fix = _FIXES.get(error["type"], "")
        if error["type"] == "extra_forbidden":
            allowed = _allowed_fields(loc[:-1])
            if allowed:
                fix += f"; allowed here: {', '.join(allowed)}"
            message = f"unknown field {loc[-1]!r}"
        elif error["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing"
        elif error["type"] == "value_error":
            # our validators put the fix in the message itself
            fix = ""
        problems.append(
            SpecProblem(
                source,
                message,
                fix,
                slo=_slo_name(document, loc),
                field=_field_path(loc) or None,
                line=_line(node, loc),
            )
        )
    return problems


def _loc(error: Any) -> tuple[Any, ...]:
    """The error's location as written in the file: without the tags of a union's shapes."""
    return tuple(part for part in error["loc"] if part not in UNION_TAGS)


def _slo_name(document: dict[str, Any], loc: Sequence[Any]) -> str | None:
    if len(loc) >= 2 and loc[0] == "slos" and isinstance(loc[1], int):
        slos = document.get("slos")
        if isinstance(slos, list) and loc[1] < len(slos) and isinstance(slos[loc[1]], dict):
            name = slos[loc[1]].get("name")
            return str(name) if name is not None else f"#{loc[1] + 1}"
    return None


def _split_field(field: str) -> tuple[str | int, ...]:
    """``tiers[0].burn_rate`` -> ``("tiers", 0, "burn_rate")``, a location ``_line`` can follow."""
    parts: list[str | int] = []
    for name in field.split("."):
        head, *indexes = name.split("[")
        if head:
            parts.append(head)
        parts.extend(int(i.rstrip("]")) for i in indexes if i.rstrip("]").isdigit())
    return tuple(parts)


def _field_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """The 1-based line of ``loc`` in the composed YAML, or of its nearest existing parent."""
    if node is None:
        return None
    current = node
    for depth, part in enumerate(loc):
        nxt: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            pair = next(((k, v) for k, v in current.value if getattr(k, "value", None) == part), None)
            if pair is not None:
                # the key's own line for the field itself, its value to descend further
                nxt = pair[0] if depth == len(loc) - 1 else pair[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            nxt = current.value[part]
        if nxt is None:
            break
        current = nxt
    return int(current.start_mark.line) + 1


def _line_in(node: yaml.Node | None, index: int, loc: Sequence[Any]) -> int | None:
    """``_line`` inside the ``index``-th item of a top-level list."""
    return _line(node, (index, *loc))


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: Any = SLOFile
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """tuple[X, ...], X | None, Annotated[...] -> X (the model inside, if any)."""
    for arg in typing.get_args(annotation) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    if isinstance(annotation, types.UnionType):
        return None
    return annotation


def _allowed_fields(loc: Sequence[Any]) -> list[str]:
    model = _model_at(loc)
    # As written in files: a field whose name is a Python keyword is declared by alias (``for``).
    return [f.alias or name for name, f in model.model_fields.items()] if model is not None else []


def translate_paths(paths: Iterable[str | Path]) -> tuple[LoadResult, formats.Translated]:
    """``load_paths``, and the native documents the OpenSLO, Sloth CRD and Pyrra files translate to.

    For ``budgetguard convert``: native and Sloth ``prometheus/v1`` files given too are validated (and
    OpenSLO references resolve across all files), but need no translation.
    """
    return _load_paths(paths, None)


def iter_problems(result: LoadResult) -> Iterator[str]:
    for problem in result.problems:
        yield str(problem)
