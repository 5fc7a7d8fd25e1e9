"""budgetguard: an error-budget guard for progressive delivery.

The public API is what this module exports; everything else is private and may change.
"""

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
