"""``budgetguard convert``: the budgetguard/v1 equivalent of OpenSLO, Sloth CRD or Pyrra SLO files.

0 native YAML printed (or nothing to convert), 2 invalid input (nothing printed).
"""

from __future__ import annotations

import argparse
from typing import TextIO

from budgetguard import __version__
from budgetguard.cli._common import EXIT_OK, EXIT_SPEC, Subcommands, report_problems, to_yaml


def add_parsers(commands: Subcommands) -> None:
    convert = commands.add_parser(
        "convert",
        help="print the budgetguard/v1 equivalent of OpenSLO, Sloth CRD or Pyrra SLO files",
        description="Print the native budgetguard/v1 YAML of every OpenSLO v1, Sloth PrometheusServiceLevel "
        "and Pyrra ServiceLevelObjective SLO in the files, for migrating; OpenSLO references resolve across "
        "all files given. Exit 2, printing nothing, when any file is invalid.",
    )
    convert.add_argument("paths", nargs="+", metavar="FILE", help="SLO files or directories of them")


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from budgetguard.core import formats
    from budgetguard.core.spec import NATIVE_VERSION, SLOTH_VERSION
    from budgetguard.loader import translate_paths

    paths = args.paths
    loaded, translated = translate_paths(paths)
    if not loaded.ok:
        report_problems(loaded, err)
        return EXIT_SPEC
    # A Sloth prometheus/v1 document converts to the same document as budgetguard/v1, which reads every
    # Sloth field the same way; native documents need nothing.
    sloth = [(source, d) for source, d in loaded.documents if d.version == SLOTH_VERSION]
    if not translated.translations and not sloth:
        print(
            "nothing to convert: no OpenSLO, Sloth (prometheus/v1 or CRD) or Pyrra SLO in the files given",
            file=err,
        )
        return EXIT_OK
    lines = [f"# budgetguard/v1 written by budgetguard {__version__} `budgetguard convert` {' '.join(paths)}"]
    lines += [f"# note: {note}" for note in loaded.notes]
    documents = [
        f"# Sloth prometheus/v1 service {document.service!r} in {source}\n"
        f"{to_yaml(formats.native_data(document.model_copy(update={'version': NATIVE_VERSION})))}"
        for source, document in sloth
    ]
    documents += [
        f"# {t.describe} in {t.source}\n{to_yaml(formats.native_data(t.document))}"
        for t in translated.translations
    ]
    out.write("\n".join(lines) + "\n" + "---\n".join(documents))
    return EXIT_OK
