"""The SQLite schema: its tables, its numbered migrations, and the time slot its index is built on.

Schema (version 6; ``PRAGMA user_version`` is the applied migration's number)::

    evaluations       one row per SLO per cycle
      id INTEGER PRIMARY KEY, at REAL (UTC unix seconds), slo_id TEXT ("service/name"), service TEXT,
      slo TEXT, verdict TEXT, reason TEXT, budget_remaining REAL, error_ratio REAL, events REAL,
      verdict_changed INTEGER (1 when the verdict differs from the SLO's previous row: retention keeps
      it), record BLOB (``records.to_record`` as JSON deflated against a preset dictionary, see
      ``encode_record``; plain JSON TEXT in rows written before compression)
      index (ten-minute slot of at, slo_id, at): the history of one SLO since T (one seek per slot)
      and retention. Time comes first so that a cycle's thousand inserts land in the few index pages
      of the current slot; an (slo_id, at) index puts each SLO's newest entry on its own page and a
      cycle rewrites a thousand pages (measured: 200 ms instead of 33 ms per cycle on a 3 GB file)
    slo_latest        one row per SLO: its newest evaluation's id, time and verdict, kept by a trigger
      on insert; the previous verdict of a cycle and ``latest`` are primary-key lookups here
    verdict_changes   one row per change, the first evaluation of an SLO included (from NULL)
      id INTEGER PRIMARY KEY, at REAL, slo_id TEXT, from_verdict TEXT NULL, to_verdict TEXT, reason TEXT
      index (slo_id, at) and (at)
    retention_state   one row: downsampled_until REAL, where the last downsampling stopped, so each
      prune reads only the rows that aged since the previous one; (migration 5) thinned_until REAL,
      the same for the second level, one row per SLO per hour
    incidents         (migration 2) one row per canary incident (``guard.Incident``), id TEXT
      PRIMARY KEY (deterministic, ``guard.incident_id``); index (state, slo_id) for the open ones
    outbox            (migration 2) one row per delivery to make, written in the transaction of the
      decision that made it: idempotency_key TEXT UNIQUE (a replayed decision inserts nothing), action,
      event, request (``records.request_to_record`` JSON), status (pending, delivered, already_done,
      failed, dry_run), attempts, next_attempt_at, last_status, last_detail, done_at, resend_at (when
      a delivered trigger must be sent again, for targets that forget, like Alertmanager)
    guard_pauses      (migration 2) SLOs whose guard is paused: paused_at, until (NULL: until resumed),
      by, reason
    incidents.affected  (migration 3) who is affected (``affected.to_record`` JSON), NULL until the
      daemon's breakdown query answered; read into every outbox row of the incident when delivered
    write_probe       (migration 4) one row that the readiness probe rewrites with the time: a real
      write, since SQLite skips rewriting a row with its own value
    outbox claims       (migration 6) claimed_by, claim_token, claimed_until: the delivery in flight
      (``deliveries.claim_due``); recording its attempt clears them
    leader_lease        (migration 6) one row: holder, token, acquired_at, expires_at. Used on PostgreSQL
      (``budgetguard.store.postgres``: the same versions in its dialect), where replicas share the
      database and elect a leader; SQLite runs one replica, held by ``lockfile``

Migrations only append; the file records the last one applied in ``PRAGMA user_version``. The slot
expression is here beside the index that spells it, because a query that spells it differently makes
SQLite scan the table. Nothing here touches a file; ``connection`` runs the migrations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One step of the schema; ``version`` is what ``PRAGMA user_version`` says once it has run.

    Migrations only ever append: a released one is never edited, because files in the field have
    already run it.
    """

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "evaluations, the latest evaluation of each SLO, verdict changes and the retention watermark",
        (
            """
            CREATE TABLE evaluations (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                slo_id TEXT NOT NULL,
                service TEXT NOT NULL,
                slo TEXT NOT NULL,
                verdict TEXT NOT NULL,
                reason TEXT NOT NULL,
                budget_remaining REAL,
                error_ratio REAL,
                events REAL,
                verdict_changed INTEGER NOT NULL,
                record BLOB NOT NULL
            )
            """,
            # Queries must spell the slot as SLOT does, or SQLite cannot use this index.
            "CREATE INDEX evaluations_by_slot ON evaluations (CAST(at / 600 AS INTEGER), slo_id, at)",
            """
            CREATE TABLE slo_latest (
                slo_id TEXT PRIMARY KEY,
                evaluation_id INTEGER NOT NULL,
                at REAL NOT NULL,
                verdict TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            """
            CREATE TRIGGER evaluations_keep_slo_latest AFTER INSERT ON evaluations BEGIN
                INSERT INTO slo_latest (slo_id, evaluation_id, at, verdict)
                VALUES (NEW.slo_id, NEW.id, NEW.at, NEW.verdict)
                ON CONFLICT (slo_id) DO UPDATE
                SET evaluation_id = excluded.evaluation_id, at = excluded.at, verdict = excluded.verdict
                WHERE excluded.at >= slo_latest.at;
            END
            """,
            """
            CREATE TABLE verdict_changes (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                slo_id TEXT NOT NULL,
                from_verdict TEXT,
                to_verdict TEXT NOT NULL,
                reason TEXT NOT NULL
            )
            """,
            "CREATE INDEX verdict_changes_by_slo_at ON verdict_changes (slo_id, at)",
            "CREATE INDEX verdict_changes_by_at ON verdict_changes (at)",
            """
            CREATE TABLE retention_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                downsampled_until REAL NOT NULL
            )
            """,
            "INSERT INTO retention_state (id, downsampled_until) VALUES (1, 0)",
        ),
    ),
    Migration(
        2,
        "canary incidents, the action outbox and guard pauses",
        (
            """
            CREATE TABLE incidents (
                id TEXT PRIMARY KEY,
                slo_id TEXT NOT NULL,
                service TEXT NOT NULL,
                slo TEXT NOT NULL,
                canary_label TEXT NOT NULL,
                canary_value TEXT NOT NULL,
                baseline TEXT,
                state TEXT NOT NULL,
                opened_at REAL NOT NULL,
                reason TEXT NOT NULL,
                burn_rates TEXT NOT NULL,
                events REAL,
                healthy_since REAL,
                acknowledged_at REAL,
                acknowledged_by TEXT,
                resolved_at REAL,
                resolution TEXT
            ) WITHOUT ROWID
            """,
            "CREATE INDEX incidents_by_state ON incidents (state, slo_id)",
            "CREATE INDEX incidents_by_canary ON incidents (slo_id, canary_value, opened_at)",
            """
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                incident_id TEXT NOT NULL REFERENCES incidents (id),
                action TEXT NOT NULL,
                event TEXT NOT NULL,
                request TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                next_attempt_at REAL,
                last_attempt_at REAL,
                last_status INTEGER,
                last_detail TEXT,
                done_at REAL,
                resend_at REAL
            )
            """,
            "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
            "CREATE INDEX outbox_by_incident ON outbox (incident_id)",
            """
            CREATE TABLE guard_pauses (
                slo_id TEXT PRIMARY KEY,
                paused_at REAL NOT NULL,
                until REAL,
                by TEXT,
                reason TEXT
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        3,
        "who is affected: the breakdown of an incident's canary errors",
        ("ALTER TABLE incidents ADD COLUMN affected TEXT",),
    ),
    Migration(
        4,
        "the readiness probe's row: readiness is a real write",
        (
            """
            CREATE TABLE write_probe (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                probed_at REAL NOT NULL
            )
            """,
        ),
    ),
    Migration(
        5,
        "a second retention level: where thinning to one evaluation per hour stopped",
        ("ALTER TABLE retention_state ADD COLUMN thinned_until REAL NOT NULL DEFAULT 0",),
    ),
    Migration(
        6,
        "delivery claims and the leader lease, for replicas sharing one database",
        (
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
            "ALTER TABLE outbox ADD COLUMN claim_token INTEGER",
            "ALTER TABLE outbox ADD COLUMN claimed_until REAL",
            # Used on PostgreSQL only (SQLite runs one replica, held by a lock file): kept here too so
            # both backends have the same schema at the same version.
            """
            CREATE TABLE leader_lease (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                holder TEXT NOT NULL,
                token INTEGER NOT NULL,
                acquired_at REAL NOT NULL,
                expires_at REAL NOT NULL
            )
            """,
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version

# The ten-minute slot of a time, exactly as the evaluations_by_slot index spells it. CAST truncates
# towards zero, which is floor for every time after 1970.
SLOT_SECONDS = 600
SLOT = "CAST(at / 600 AS INTEGER)"


def slot(seconds: float) -> int:
    """The slot of a time, as ``SLOT`` computes it in SQL."""
    return math.floor(seconds / SLOT_SECONDS)
