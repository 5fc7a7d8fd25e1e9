"""budgetguard: an error-budget guard for progressive delivery.

The public API is what this module exports; everything else is private and may change.

The names are imported on first use (PEP 562): ``budgetguard gate`` and ``--help`` import this package
and must not pay for pydantic and the SLO model they never use (#14, start-up under 0.3 s).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from budgetguard.core.errors import (
        BudgetguardError,
        ConfigError,
        QueryError,
        SourceAuthError,
        SourceError,
        SourceProtocolError,
        SourceTimeout,
        SourceUnavailable,
        SpecError,
        SpecProblem,
    )
    from budgetguard.core.policy import Evaluation, Observation
    from budgetguard.core.spec import SLO, BurnTier, Severity
    from budgetguard.core.verdict import Verdict

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS = {
    "BudgetguardError": "budgetguard.core.errors",
    "ConfigError": "budgetguard.core.errors",
    "QueryError": "budgetguard.core.errors",
    "SourceAuthError": "budgetguard.core.errors",
    "SourceError": "budgetguard.core.errors",
    "SourceProtocolError": "budgetguard.core.errors",
    "SourceTimeout": "budgetguard.core.errors",
    "SourceUnavailable": "budgetguard.core.errors",
    "SpecError": "budgetguard.core.errors",
    "SpecProblem": "budgetguard.core.errors",
    "Evaluation": "budgetguard.core.policy",
    "Observation": "budgetguard.core.policy",
    "SLO": "budgetguard.core.spec",
    "BurnTier": "budgetguard.core.spec",
    "Severity": "budgetguard.core.spec",
    "Verdict": "budgetguard.core.verdict",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'budgetguard' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "SLO",
    "BudgetguardError",
    "BurnTier",
    "ConfigError",
    "Evaluation",
    "Observation",
    "QueryError",
    "Severity",
    "SourceAuthError",
    "SourceError",
    "SourceProtocolError",
    "SourceTimeout",
    "SourceUnavailable",
    "SpecError",
    "SpecProblem",
    "Verdict",
    "__version__",
]
