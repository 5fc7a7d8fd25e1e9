"""How values are written into the store and read back: times as UTC unix seconds, records compressed.

Times are UTC unix seconds and nothing else; datetimes in and out are timezone-aware, and a naive one
is a ``ValueError``. An evaluation's record (``records.to_record``) is stored as compact JSON deflated
against a preset dictionary. Shared by every backend, so a record reads the same whichever wrote it.
No database here: bytes and numbers in, values out.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from typing import Any

from budgetguard.core import affected as affected_records
from budgetguard.core.errors import StoreError
from budgetguard.core.ports import Affected


def unix(at: datetime, name: str) -> float:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive {at.isoformat()}")
    return at.timestamp()


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def opt_unix(at: datetime | None) -> float | None:
    return None if at is None else unix(at, "time")


def opt_time(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_unix(seconds)


# Records are compressed with a preset dictionary of what every record repeats (its keys, the default
# windows and tiers, the usual reason phrases): a 1.6 KB record becomes a few hundred bytes, which is
# most of the file. The dictionary is part of the format, so it is versioned by the blob's prefix;
# rows written as plain JSON text (before compression) still read. Measured in bench/daemon_bench.py.
_RECORD_PREFIX = b"Z1"
_RECORD_DICTIONARY = (
    b'"missing":{},"labels":{},"warnings":[],"error_kind":null,"source":"slos/'
    b'"time_to_exhaustion_seconds":null,"events":null,"note":"","firing":null,"firing":false,"firing":true,'
    b'"reason":"cannot judge the page tier 1h/5m: no traffic (0 events) in 5m","reason":"no tier firing; '
    b"closest is the ticket tier 3d/6h at 0.1x over 3d (fires above 1x)"
    b'","reason":"source error (unavailable): ","reason":"page tier 1h/5m firing: burn 20x over 1h and '
    b'20x over 5m, above 14.4x (2% of the 30d budget in 1h)","verdict":"inconclusive","verdict":"warning",'
    b'"verdict":"burning","verdict":"error","verdict":"healthy",'
    b'{"severity":"ticket","long_window":"3d","short_window":"6h","burn_rate_threshold":1.0,'
    b'"budget_fraction":0.1,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""}]'
    b'{"severity":"ticket","long_window":"1d","short_window":"2h","burn_rate_threshold":3.0,'
    b'"budget_fraction":0.1,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'"tiers":[{"severity":"page","long_window":"1h","short_window":"5m","burn_rate_threshold":14.4,'
    b'"budget_fraction":0.02,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'{"severity":"page","long_window":"6h","short_window":"30m","burn_rate_threshold":6.0,'
    b'"budget_fraction":0.05,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'"burn_rates":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'"error_ratios":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'"events_by_window":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'{"service":"","slo":"","objective":99.9,"window":"30d","at":"2026-01-01T00:00:00Z","verdict":"healthy",'
    b'"budget_remaining":0.0,"error_ratio":0.0,"events":0.0,"time_to_exhaustion_seconds":0.0,'
)


def encode_record(record: dict[str, Any]) -> bytes:
    """A record as stored: compact JSON, deflated against the preset dictionary."""
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    packer = zlib.compressobj(
        6, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _RECORD_DICTIONARY
    )
    return _RECORD_PREFIX + packer.compress(text) + packer.flush()


def decode_record(stored: bytes | str) -> dict[str, Any]:
    # Infinity is kept (json writes it, json reads it back) rather than failing a cycle.
    if isinstance(stored, bytes) and stored.startswith(_RECORD_PREFIX):
        unpacker = zlib.decompressobj(zlib.MAX_WBITS, _RECORD_DICTIONARY)
        try:
            stored = unpacker.decompress(stored[len(_RECORD_PREFIX) :]) + unpacker.flush()
        except zlib.error as exc:
            raise StoreError(f"a stored record cannot be decompressed: {exc}") from exc
    try:
        record = json.loads(stored)
    except ValueError as exc:
        raise StoreError(f"a stored record is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise StoreError("a stored record is not a JSON object")
    return record


def affected_from_text(stored: str | None) -> Affected | None:
    """Who is affected, as stored in ``incidents.affected`` (``affected.to_record`` JSON); None: not known."""
    return None if stored is None else affected_records.from_record(json.loads(stored))
