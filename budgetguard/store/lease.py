"""The leader lease as a value: who holds it and its fencing token (``budgetguard.leadership`` keeps it).

Replicas sharing a PostgreSQL database elect a leader through one row of ``leader_lease``
(``postgres.LeaseTable``); the token goes up by one at every takeover, and a store given the lease as
its ``fence`` makes each leader-only write conditional on the lease still being held with that token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    """The leader lease as held: who and the fencing token, which goes up by one at every takeover."""

    holder: str
    token: int


# A fence is the lease that a store's leader-only writes are conditional on (``PostgresStore.fence``).
Fence = Lease
