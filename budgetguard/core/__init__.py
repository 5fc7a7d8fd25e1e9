"""The pure core: SLO declarations, budget arithmetic, policy and canary judgement, rules, gates.

Nothing here does I/O: no HTTP, database, clock, environment or logging handlers. Time arrives as an
argument and problems come back as values or exceptions from ``core.errors``. The layers contract in
pyproject.toml enforces it for every module under this package, including tomorrow's.
"""
