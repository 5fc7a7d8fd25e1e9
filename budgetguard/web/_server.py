"""uvicorn inside the daemon's own event loop, started and stopped by the daemon.

A request reads the same in-memory state the scheduler writes, without locks or copies. The daemon,
not uvicorn, owns the process' signals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM, SIGINT and SIGHUP.

    Left to itself, uvicorn swaps in its handlers while it serves and, on the way out, restores the
    previous ones and raises again any signal it caught; a SIGTERM arriving while uvicorn's handler is
    in place would kill the process instead of stopping it cleanly.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn in the caller's event loop, started and stopped by the daemon."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):  # bounded: up to 10 s for the socket to bind
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        if self._task.done():
            self._task.result()  # re-raises the bind error
            raise OSError("the HTTP server stopped while starting")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:
                self._task.cancel()
