"""The daemon's memory: every evaluation, verdict change, incident and delivery, in one database.

The file must survive a crash at any instant and a restart must serve the verdicts and exported values
it had before, so a cycle is written in one transaction and ``latest`` rebuilds evaluations with
``records.from_record``. The store must not do HTTP or make policy decisions: it stores what the engine
decided and answers questions about it. sqlite-utils (and ``sqlite3``) live in this package and nowhere
else; every database error leaves it as a ``StoreError`` (``core.errors``) chained to the original.

The rooms:

* ``schema``: the SQLite tables (drawn in its docstring) and their numbered migrations;
* ``encoding``: times as UTC unix seconds, records compressed against a preset dictionary;
* ``connection``: the SQLite connection: opening, migrating, transactions, health, closing;
* ``history``: writing a cycle; the latest evaluations, one SLO's history, the verdict changes;
* ``retention``: downsampling, deleting and giving space back (``prune``);
* ``incidents``: incidents, a decision's writes, guard pauses;
* ``deliveries``: the outbox table (``OutboxRow``, ``OutboxStatus``);
* ``sqlite``: ``Store``, the front that hands each public method to its room;
* ``postgres``: ``PostgresStore``, the same methods on PostgreSQL for replicas sharing a database
  (psycopg lives there only), its migrations (the same versions in PostgreSQL's dialect) and the
  leader lease's table; ``lease``: the lease as a value; ``lockfile``: one daemon per SQLite file.

``open_store(db)`` picks the backend from the ``db`` setting: a ``postgresql://`` URL opens
PostgreSQL (psycopg is imported only then), a path SQLite.

The interfaces. ``Store``'s public methods are the contract; the PostgreSQL backend implements the same
names and signatures. Callers depend on small Protocols defined where they are used:

* ``budgetguard.outbox.OutboxStore`` (the delivery worker): ``claim_due``, ``next_due``,
  ``record_attempt``;
* ``budgetguard.control.ControlStore`` (manual control from the CLI and the API): ``incident``,
  ``incidents``, ``outbox``, ``acknowledge``, ``write_decision``, ``retry``, ``pause``, ``resume``,
  ``pauses``;
* the daemon and the CLI use the rest: ``record_cycle`` (with ``Transaction.execute``/``query``/
  ``write_decision`` inside), ``transaction``, ``latest``, ``history``, ``verdict_changes``,
  ``budget_series`` (the status page), ``last_opened``, ``set_affected``, ``prune``, ``writable``,
  ``write_problem``, ``close`` and the context manager.

Later issues append a ``Migration`` to ``MIGRATIONS`` and write their own rows in the cycle's
transaction through ``record_cycle(evaluations, extra=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from budgetguard.core.errors import NotLeader, StoreError
from budgetguard.store.connection import DEFAULT_BUSY_TIMEOUT, Parameters, Transaction
from budgetguard.store.deliveries import OutboxRow, OutboxStatus
from budgetguard.store.encoding import decode_record, encode_record
from budgetguard.store.lease import Fence, Lease
from budgetguard.store.retention import (
    DOWNSAMPLE_BUCKET,
    KEEP_RETENTION,
    RAW_RETENTION,
    THIN_BUCKET,
    THIN_RETENTION,
    PruneReport,
)
from budgetguard.store.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from budgetguard.store.sqlite import Store

if TYPE_CHECKING:
    from budgetguard.store.postgres import LeaseTable, PostgresStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DOWNSAMPLE_BUCKET",
    "KEEP_RETENTION",
    "MIGRATIONS",
    "RAW_RETENTION",
    "SCHEMA_VERSION",
    "THIN_BUCKET",
    "THIN_RETENTION",
    "AnyStore",
    "Fence",
    "Lease",
    "Migration",
    "NotLeader",
    "OutboxRow",
    "OutboxStatus",
    "Parameters",
    "PruneReport",
    "Store",
    "StoreError",
    "Transaction",
    "decode_record",
    "encode_record",
    "is_postgres",
    "open_lease_table",
    "open_postgres",
    "open_store",
]

# Either backend: the SQLite file of one replica or the PostgreSQL database replicas share.
AnyStore: TypeAlias = "Store | PostgresStore"

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str | Path) -> bool:
    """Whether the ``db`` setting names a PostgreSQL database (a URL) rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(_POSTGRES_SCHEMES)


def open_store(db: str | Path) -> AnyStore:
    """The store the ``db`` setting names: a ``postgresql://`` URL opens PostgreSQL, a path SQLite."""
    return open_postgres(str(db)) if is_postgres(db) else Store(db)


def open_postgres(url: str) -> PostgresStore:
    """The PostgreSQL store at ``url``, migrated to the current schema."""
    from budgetguard.store.postgres import PostgresStore  # noqa: PLC0415 (psycopg only for a URL)

    return PostgresStore(url)


def open_lease_table(url: str) -> LeaseTable:
    """The leader lease of the PostgreSQL database at ``url``, on a connection of its own."""
    from budgetguard.store.postgres import LeaseTable  # noqa: PLC0415 (psycopg only for a URL)

    return LeaseTable(url)
