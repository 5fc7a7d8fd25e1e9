"""One module per command (``incidents``, ``pause`` and ``resume`` share ``control``).

Each module offers ``add_parsers(commands)``, which declares its command(s) and flags, and
``handle(args, out, err) -> int``, which runs it. Handlers import what they need inside, so building
the parser, and ``--help``, stay light; ``budgetguard.cli`` dispatches through a table.
"""
