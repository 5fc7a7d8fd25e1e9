"""/metrics as ready bytes: the per-SLO part rendered once per cycle, off the event loop, gzipped once (#14).

Rendering every SLO's series at scrape time took 1.1 s and 4 MB at 1,000 SLOs, on the event loop that
answers the pull gates, so every gate waited for every scrape. The per-SLO series only change when a
cycle ends (or the SLO files are reloaded), so the daemon calls ``refresh()`` then: the part is rendered
in a worker thread, for each exposition format a scraper has asked for (OpenMetrics before any has),
and compressed there once; past 1,000 SLOs the cycle worker process renders and compresses it and hands
it to ``refresh(ready)``, deflated only (``text_of`` inflates it for a scraper that refuses gzip).
A scrape sends those bytes followed by the small live part (counters, the cycle histogram, the event
loop's lag), rendered per scrape so counters never lag behind.

Gzip without compressing the large part again: the part is kept as raw deflate ending on a byte
boundary (``Z_SYNC_FLUSH``, no final block), and each scrape appends the live part's own deflate stream
(final block), then a gzip header and a trailer with the CRC-32 of both combined. Deflate blocks may
follow each other that way (RFC 1951, 3.2.3; the second stream only refers back into itself), so the
result is one ordinary gzip member that any client reads.

A scraper asking before the first refresh of its format gets it rendered then, in the worker thread.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder

from budgetguard.exporter import Exporter

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
# Level 1: at 10,000 SLOs the part (43 MB of text) deflates in 0.11 s of CPU to 4.5 MB, where level 6
# took 0.42 s for 3.9 MB (bench/metrics_render_bench.py); the scrape is on loopback or a cluster network.
_LEVEL = 1
# The format prepared before any scraper has asked: Prometheus's (it asks for OpenMetrics first).
BEFORE_ANY_SCRAPE = "application/openmetrics-text;version=1.0.0"


@dataclass
class Part:
    """One format's per-SLO part: as raw deflate ending on a byte boundary, the CRC-32 and length of its
    text, and the text itself unless it was left out (``text_of`` inflates it again when asked)."""

    deflated: bytes
    crc: int
    length: int
    text: bytes | None = None


def prepare_part(text: bytes, *, keep_text: bool = True) -> Part:
    """``keep_text=False``: the deflated form alone, a tenth of the size. A cycle worker process sends
    that: Prometheus asks for gzip, and the daemon then never copies 40 MB of text at 10,000 SLOs."""
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = packer.compress(text) + packer.flush(zlib.Z_SYNC_FLUSH)
    return Part(deflated, zlib.crc32(text), len(text), text if keep_text else None)


async def text_of(part: Part) -> bytes:
    """The part's text, inflated in a worker thread (zlib lets the event loop run meanwhile) and kept
    when it was left out."""
    if part.text is None:
        part.text = await asyncio.to_thread(_inflate, part.deflated)
    return part.text


def _inflate(deflated: bytes) -> bytes:
    # decompressobj: the stream has no final block (it ends on a sync flush), which decompress() refuses.
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(deflated)


def is_openmetrics(content_type: str) -> bool:
    return content_type.startswith("application/openmetrics")


def gzip_joined(part_deflated: bytes, part_crc: int, part_length: int, tail: bytes) -> bytes:
    """One gzip member holding the prepared part followed by ``tail``."""
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    rest = packer.compress(tail) + packer.flush(zlib.Z_FINISH)
    crc = zlib.crc32(tail, part_crc)
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, (part_length + len(tail)) & 0xFFFFFFFF)
    return _GZIP_HEADER + part_deflated + rest + trailer


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (``gzip;q=0`` refuses it)."""
    for item in (accept_encoding or "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        return q > 0
    return False


class PreparedMetrics:
    """Serves the exporter's exposition from bytes prepared once per cycle (see the module docstring)."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter
        self._parts: dict[str, Part] = {}  # by the accept header's chosen content type
        self._accepts: dict[str, str | None] = {}  # content type -> an accept header that chose it
        self._lock = asyncio.Lock()

    def _render(self, accept: str | None) -> tuple[str, Part]:
        text, content_type = self._exporter.render_state(accept)
        return content_type, prepare_part(text)

    def formats(self) -> tuple[bool, ...]:
        """The formats the next refresh renders, as OpenMetrics (True) or the text format (False)."""
        accepts = list(self._accepts.values()) or [BEFORE_ANY_SCRAPE]
        return tuple(is_openmetrics(choose_encoder(accept or "")[1]) for accept in accepts)

    async def refresh(self, ready: Mapping[bool, Part] | None = None) -> None:
        """Render again, in a worker thread, every format asked for so far (call when a cycle ends).

        ``ready``: parts already rendered for the view as it is now (by a cycle worker process), by
        format (True: OpenMetrics); a format among them is taken as it is, not rendered again."""
        async with self._lock:
            # Only formats a scraper has asked for (before any scrape: OpenMetrics, what Prometheus asks
            # for, not remembered as asked), so a daemon scraped by Prometheus renders OpenMetrics alone,
            # and its first scrape finds it ready (#14). A format not rendered now loses its old part: its
            # next scrape renders it, never stale.
            accepts = list(self._accepts.values()) or [BEFORE_ANY_SCRAPE]
            parts: dict[str, Part] = {}
            for accept in accepts:
                content_type = choose_encoder(accept or "")[1]
                made = (ready or {}).get(is_openmetrics(content_type))
                parts[content_type] = made if made is not None else await self._rendered(accept)
            self._parts = parts

    async def _rendered(self, accept: str | None) -> Part:
        return (await asyncio.to_thread(self._render, accept))[1]

    async def serve(self, accept: str | None, accept_encoding: str | None) -> tuple[bytes, str, str | None]:
        """(body, content type, content encoding or None) for one scrape."""
        live, content_type = self._exporter.render_live(accept)
        part = self._parts.get(content_type) or await self._first(accept)
        self._accepts.setdefault(content_type, accept)  # rendered again at each refresh from now on
        if accepts_gzip(accept_encoding):
            return gzip_joined(part.deflated, part.crc, part.length, live), content_type, "gzip"
        return await text_of(part) + live, content_type, None

    async def _first(self, accept: str | None) -> Part:
        """A format asked for before any refresh rendered it: render it now (in the worker thread)."""
        async with self._lock:
            content_type, part = await asyncio.to_thread(self._render, accept)
            self._parts[content_type] = part
            self._accepts[content_type] = accept
            return part
