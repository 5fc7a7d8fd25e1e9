"""An evaluation cycle's heavy work in a child process, so the event loop answering the gates never waits
for it (#14).

At 10,000 SLOs a cycle is seconds of pure Python: decoding and judging the answers, serialising the
store's rows, writing the per-SLO part of /metrics. In worker threads that work still holds the GIL the
event loop needs, taking it back every switch interval (1 ms), several times per request, so gates that
answer in 2-5 ms between cycles took 100 ms and more during one. Another process has a GIL of its own.

``CycleWorker`` is an evaluator (``budgetguard.cycle.Evaluator``) that, once ``min_slos`` SLOs are in
force, has a child process (``python -m budgetguard.cycleworker``) with its own metrics source evaluate
them, the same engine as in-process (recording or raw mode). The child sends back the evaluations, the
store's rows for them (``history.prepare``) and the per-SLO part of /metrics in the formats scrapers ask
for (``exporter.SLOLines``, deflated as ``exporter.prepared`` keeps it), so the daemon only decodes the
evaluations, a few milliseconds per message, between which the event loop answers requests. Deciding,
storing, publishing and acting stay in the daemon: the child decides nothing and writes nothing.

Messages on the child's stdin and stdout are length-prefixed pickles (the child is this program, started
by the daemon; nothing else writes to those pipes). An SLO is sent to the child when the SLOs in force
change, in small messages, and afterwards named by its index (pickle's persistent ids), so a cycle's
evaluations carry no copy of their SLOs back and arrive bound to the daemon's own SLO objects.

Faults: when the child cannot start, dies, answers nonsense or falls silent for ``timeout``, the error
is logged and counted (``on_failure``), the cycle is evaluated in the daemon's process as it would be
without a worker, and so are the cycles of the next ``retry_after``; then a new child is tried. A fault
of the worker never costs a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import IO, Any

from budgetguard import memory
from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import QueryMode
from budgetguard.cycle import Evaluator, Prepared
from budgetguard.engine import Engine
from budgetguard.exporter import SLOLines
from budgetguard.exporter.prepared import Part, prepare_part
from budgetguard.logs import configure_logging
from budgetguard.recording import RecordingEngine
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from budgetguard.store import history
from budgetguard.store.history import Pending

log = logging.getLogger("budgetguard")

_LENGTH = struct.Struct("<Q")
# Evaluations per message: decoding 500 takes ~6 ms of the daemon's event loop (10,000 in 0.12 s), and
# collecting and freezing them ~3 ms.
EVALUATIONS_PER_MESSAGE = 500
SLOS_PER_MESSAGE = 200
ROWS_PER_MESSAGE = 2000  # the store's rows: 10,000 took 16 ms to decode in one message
# Far above the largest message (/metrics at 100,000 SLOs): a larger length is a broken stream.
MAX_MESSAGE = 4 * 1024**3
# A child that says nothing for this long (it says it is alive four times as often while it waits for
# its source, however slow that is) is stopped and the cycle evaluated in the daemon.
DEFAULT_TIMEOUT = timedelta(minutes=1)
STOP_WAIT = 2.0  # seconds a child has to leave after its stdin closes
# After a failure, cycles stay in the daemon's process this long before a new child is tried: a worker
# that cannot start or keeps dying (killed for memory) costs one attempt and one error line per period.
DEFAULT_RETRY_AFTER = timedelta(minutes=5)


class WorkerError(Exception):
    """The child failed, died, or answered something the daemon cannot take."""


def _persistent_ids(slos: Sequence[SLO]) -> dict[int, Any]:
    """Each SLO named by its index, and each of its tiers by (SLO index, tier index): what evaluations
    refer to of the SLOs both processes hold, sent as names instead of copies."""
    ids: dict[int, Any] = {}
    for index, slo in enumerate(slos):
        ids[id(slo)] = index
        for number, tier in enumerate(slo.tiers):
            ids[id(tier)] = (index, number)
    return ids


class _Pickler(pickle.Pickler):
    def __init__(self, file: IO[bytes], ids: dict[int, Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._ids = ids

    def persistent_id(self, obj: Any) -> Any:
        # Only the SLOs (and their tiers) alive in ``ids`` have those ids: no other object can share one.
        return self._ids.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, slos: Sequence[SLO]) -> None:
        super().__init__(io.BytesIO(data))
        self._slos = slos

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, int):
            return self._slos[pid]
        index, number = pid
        return self._slos[index].tiers[number]


def _frame(message: Any, ids: dict[int, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"\0" * _LENGTH.size)
    _Pickler(buffer, ids or {}).dump(message)
    data = buffer.getbuffer()
    _LENGTH.pack_into(data, 0, len(data) - _LENGTH.size)
    del data
    return buffer.getvalue()


# --- the daemon's side ----------------------------------------------------------------------------


class CycleWorker:
    """An evaluator that evaluates in a child process once ``min_slos`` SLOs are in force (module doc).

    ``inner`` evaluates in this process: below ``min_slos`` (None: always) and when the child fails.
    ``formats``: the /metrics formats to render (``PreparedMetrics.formats``), asked at each cycle.
    """

    def __init__(
        self,
        inner: Evaluator,
        source: PrometheusConfig,
        *,
        query_mode: QueryMode,
        per_window: bool,
        formats: Callable[[], tuple[bool, ...]],
        min_slos: int | None,
        log_level: str = "INFO",
        log_json: bool = False,
        timeout: timedelta = DEFAULT_TIMEOUT,
        on_failure: Callable[[str], None] = lambda why: None,
        command: Sequence[str] = (sys.executable, "-m", "budgetguard.cycleworker"),
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        evaluations_per_message: int = EVALUATIONS_PER_MESSAGE,
        rows_per_message: int = ROWS_PER_MESSAGE,
    ) -> None:
        self._inner = inner
        self._start = ("start", source, str(query_mode), log_level, log_json)
        self._per_window = per_window
        self._formats = formats
        self._min_slos = min_slos
        self._timeout = timeout
        self._on_failure = on_failure
        self._command = list(command)
        self._retry_after = retry_after
        self._retry_at = 0.0  # time.monotonic() before which no new child is started
        self._evaluations_per_message = evaluations_per_message
        self._rows_per_message = rows_per_message
        self._process: asyncio.subprocess.Process | None = None
        self._sent: list[SLO] = []  # the SLOs the child holds, in its order
        self._made: tuple[list[Evaluation], Prepared] | None = None
        self.cycles_in_child = 0
        self.child_cpu_seconds = 0.0  # the child's CPU for the last cycle it evaluated

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        self._made = None
        if self._min_slos is None or len(slos) < self._min_slos:
            if self._process is not None:  # a reload left fewer SLOs: the child has nothing left to do
                await self.aclose()
            return await self._inner.evaluate_all(slos, at)
        if time.monotonic() < self._retry_at:  # it failed a moment ago: not every cycle starts another
            return await self._inner.evaluate_all(slos, at)
        try:
            evaluations, prepared = await self._in_child(slos, at)
        except asyncio.CancelledError:
            self._kill()  # a message may be half read: the next cycle starts a new child
            raise
        except Exception as exc:  # any fault of the child: the cycle runs here instead
            why = (
                f"silent for {format_duration(self._timeout)}" if isinstance(exc, TimeoutError) else f"{exc}"
            )
            await self._discard()
            self._retry_at = time.monotonic() + self._retry_after.total_seconds()
            log.error(
                "the cycle worker process failed (%s); cycles are evaluated in the daemon's process until "
                "a new worker is tried in %s",
                why,
                format_duration(self._retry_after),
            )
            self._on_failure(why)
            return await self._inner.evaluate_all(slos, at)
        self.cycles_in_child += 1
        self._made = (evaluations, prepared)
        return evaluations

    def prepared(self, evaluations: Sequence[Evaluation]) -> Prepared | None:
        """What the child made beside ``evaluations`` (the list the last cycle returned), else None."""
        made = self._made
        return made[1] if made is not None and made[0] is evaluations else None

    async def _in_child(self, slos: Sequence[SLO], at: datetime) -> tuple[list[Evaluation], Prepared]:
        process = await self._started()
        if len(self._sent) != len(slos) or any(a is not b for a, b in zip(self._sent, slos, strict=True)):
            await self._send_slos(slos)
        held = self._sent
        sizes = (self._evaluations_per_message, self._rows_per_message)
        heartbeat = self._timeout.total_seconds() / 4  # several chances before the daemon gives up
        await self._send(("evaluate", at, self._formats(), self._per_window, sizes, heartbeat))
        evaluations: list[Evaluation] = []
        pending: list[Pending] | None = []  # None: the child could not serialise them
        metrics: dict[bool, Part] = {}
        while True:
            message = await self._receive(process, held)
            kind = message[0]
            if kind == "evaluations":
                evaluations.extend(message[1])
                # Collected and frozen message by message (what ``memory.keep`` does after a cycle): one
                # collection of them all after the cycle held the event loop ~60 ms at 10,000 SLOs.
                memory.keep()
            elif kind == "pending":
                if message[1] is None or pending is None:
                    pending = None
                else:
                    pending.extend(message[1])
            elif kind == "metrics":
                metrics[message[1]] = message[2]
            elif kind == "alive":
                continue
            elif kind == "failed":
                raise WorkerError(f"its evaluation raised {message[1]}")
            elif kind == "done":
                self.child_cpu_seconds = message[1]
                break
            else:
                raise WorkerError(f"it sent an unknown message {kind!r}")
            await asyncio.sleep(0)  # the event loop answers requests between messages
        if len(evaluations) != len(held) or any(
            ev.slo is not slo for ev, slo in zip(evaluations, held, strict=True)
        ):
            raise WorkerError(f"it answered {len(evaluations)} evaluation(s) for {len(held)} SLO(s)")
        if pending is not None and len(pending) != len(evaluations):
            pending = None  # stored from the evaluations here instead
        return evaluations, Prepared(pending, metrics)

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is not None and self._process.returncode is None:
            return self._process
        self._process = None
        self._sent = []
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=16 * 1024 * 1024,  # fewer pauses of the pipe while /metrics' ~40 MB arrive
            )
        except OSError as exc:
            raise WorkerError(f"cannot start {' '.join(self._command)}: {exc}") from exc
        self._process = process
        await self._send(self._start)
        log.info("cycle worker process %d started", process.pid)
        return process

    async def _send_slos(self, slos: Sequence[SLO]) -> None:
        """The SLOs in force, a few at a time: pickling 10,000 takes a while, between which the event loop
        answers requests."""
        self._sent = []
        for first in range(0, len(slos), SLOS_PER_MESSAGE):
            await self._send(("slos", list(slos[first : first + SLOS_PER_MESSAGE])))
        await self._send(("slos_end", len(slos)))
        self._sent = list(slos)

    async def _send(self, message: Any) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise WorkerError("it is not running")
        try:
            process.stdin.write(_frame(message))
            async with asyncio.timeout(self._timeout.total_seconds()):
                await process.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            raise WorkerError(f"it stopped reading ({exc!r}, exit status {process.returncode})") from exc

    async def _receive(self, process: asyncio.subprocess.Process, slos: Sequence[SLO]) -> Any:
        assert process.stdout is not None
        try:
            # The child says it is alive while it waits for its source: silence for ``timeout`` is a
            # hung child, however slow the source.
            async with asyncio.timeout(self._timeout.total_seconds()):
                (length,) = _LENGTH.unpack(await process.stdout.readexactly(_LENGTH.size))
                if length > MAX_MESSAGE:
                    raise WorkerError(f"it announced a message of {length} bytes, over {MAX_MESSAGE}")
                data = await process.stdout.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            code = await _exit_status(process)
            raise WorkerError(f"it exited (status {code})") from exc
        try:
            return _Unpickler(data, slos).load()
        except Exception as exc:
            raise WorkerError(f"it sent a message that cannot be read ({exc!r})") from exc

    def _kill(self) -> None:
        process, self._process = self._process, None
        self._sent = []
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def _discard(self) -> None:
        """A child that failed: killed at once (it may hang) and waited for, so it leaves no zombie."""
        process = self._process
        self._kill()
        if process is not None:
            await process.wait()

    async def aclose(self) -> None:
        """Stop the child: its stdin closes and it leaves, or it is killed after ``STOP_WAIT``."""
        process, self._process = self._process, None
        self._sent = []
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _exit_status(process: asyncio.subprocess.Process) -> int | None:
    try:
        return await asyncio.wait_for(process.wait(), 1.0)
    except TimeoutError:
        return None


# --- the child's side -----------------------------------------------------------------------------


class _Child:
    """What the child holds between cycles: its source and engine, the SLOs, the /metrics lines' cache."""

    def __init__(self, out: IO[bytes], source: PrometheusConfig, query_mode: str) -> None:
        self._out = out
        self.source = PrometheusSource(source)
        self._engine: Evaluator = (
            RecordingEngine(self.source) if query_mode == QueryMode.RECORDING else Engine(self.source)
        )
        self._slos: list[SLO] = []
        self._arriving: list[SLO] = []
        self._ids: dict[int, Any] = {}
        self._lines: SLOLines | None = None

    def send(self, message: Any) -> None:
        self._out.write(_frame(message, self._ids))
        self._out.flush()

    async def _heartbeat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.send(("alive",))

    def take_slos(self, slos: list[SLO]) -> None:
        self._arriving.extend(slos)

    def slos_end(self, count: int) -> None:
        if count != len(self._arriving):
            raise WorkerError(f"{len(self._arriving)} SLO(s) arrived, {count} announced")
        self._slos, self._arriving = self._arriving, []
        self._ids = _persistent_ids(self._slos)
        self._lines = None  # its kept labels belong to the SLOs before
        memory.settle()

    async def evaluate(
        self,
        at: datetime,
        formats: tuple[bool, ...],
        per_window: bool,
        sizes: tuple[int, int],
        heartbeat: float,
    ) -> None:
        """Evaluate the SLOs held and send the evaluations, their rows and /metrics; ``sizes``: how many
        evaluations and rows per message; ``heartbeat``: seconds between two "alive" messages while the
        evaluation waits for the source."""
        per_message, rows_per_message = sizes
        cpu = time.process_time()
        beat = asyncio.create_task(self._heartbeat(heartbeat))
        with memory.collection_paused():
            try:
                evaluations = await self._engine.evaluate_all(self._slos, at)
            except Exception as exc:  # told to the daemon, which evaluates itself
                log.exception("cycle worker: the evaluation failed")
                self.send(("failed", repr(exc)))
                return
            finally:
                beat.cancel()
            for first in range(0, len(evaluations), per_message):
                self.send(("evaluations", evaluations[first : first + per_message]))
            try:
                pending = history.prepare(evaluations)
            except Exception:  # the daemon serialises them and meets the error
                self.send(("pending", None))
            else:
                for first in range(0, len(pending), rows_per_message):
                    self.send(("pending", pending[first : first + rows_per_message]))
                del pending
            if self._lines is None or self._lines.per_window != per_window:
                self._lines = SLOLines(per_window)
            for openmetrics in dict.fromkeys(formats):
                part = prepare_part(self._lines.render(evaluations, openmetrics), keep_text=False)
                self.send(("metrics", openmetrics, part))
            del evaluations
        memory.keep()
        self.send(("done", time.process_time() - cpu))


async def _child_main(out: IO[bytes]) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)

    async def receive() -> Any:
        try:
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            return pickle.loads(await reader.readexactly(length))
        except asyncio.IncompleteReadError:
            return None  # the daemon closed our stdin: leave

    start = await receive()
    if start is None:
        return 0
    _, source, query_mode, log_level, log_json = start
    configure_logging(log_level, log_json)
    child = _Child(out, source, query_mode)
    try:
        while (message := await receive()) is not None:
            kind = message[0]
            if kind == "slos":
                child.take_slos(message[1])
            elif kind == "slos_end":
                child.slos_end(message[1])
            elif kind == "evaluate":
                await child.evaluate(*message[1:])
    finally:
        await child.source.aclose()
    return 0


def main() -> int:
    """``python -m budgetguard.cycleworker``: started by the daemon, talks on its stdin and stdout."""
    # The daemon stops us by closing our stdin, after its own clean stop: a Ctrl-C in a terminal, sent
    # to both processes, must not end a cycle half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our stdout carries the messages alone: anything printed goes to stderr, with the logs.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        return asyncio.run(_child_main(out))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is ignored
        return 0


if __name__ == "__main__":
    sys.exit(main())
