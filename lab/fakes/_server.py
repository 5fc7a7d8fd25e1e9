"""The one loopback HTTP server every fake builds on: a socket on 127.0.0.1, a serving thread, TLS.

Both families of fakes (the notification services in ``notify`` and the Kubernetes-style APIs in
``kubernetes``, ``argocd`` and ``flags``) need the same life: bind a free port when made, serve in a
thread from ``start()`` (or ``with``), and on ``close()`` stop serving, end what is waiting, and join
every thread, so no test leaves a socket or thread behind. What a request means is the subclass's
``_serve(handler)``; this module never reads a body or writes an answer itself.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["LoopbackServer", "TLSFiles"]

log = logging.getLogger(__name__)

# A client that connects and sends nothing must not pin a handler thread (or close()) forever.
SOCKET_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class TLSFiles:
    """A server certificate chain and its key (PEM), to serve HTTPS instead of HTTP."""

    cert: Path
    key: Path


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer, or refused our certificate, is part of some tests.
        log.debug("fake server: error while serving %s", client_address, exc_info=True)


class LoopbackServer:
    """A threaded HTTP server on a free 127.0.0.1 port that hands each request to ``_serve``.

    The port is bound when the object is made, so ``url`` is known before ``start()``. ``closing`` is
    set by ``close()`` before the server stops, so a handler that is deliberately slow can end early.
    """

    def __init__(self, *, name: str, tls: TLSFiles | None = None) -> None:
        self.closing = threading.Event()
        self._name = name
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert), str(tls.key))
            # The handshake happens in the handler thread (Handler.setup), never in the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._scheme = "https"
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self) -> Self:
        if self._closed:
            raise RuntimeError(f"the {self._name} fake was closed; make a new one")
        if self._thread is None:
            # A short poll interval: close() waits up to one interval for the serving loop to notice.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self._name,
                daemon=True,  # close() joins it; daemon only so a forgotten fake cannot hang the interpreter
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end deliberate delays, and join every thread; safe to call twice."""
        self.closing.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.shutdown()
            thread.join(timeout=SOCKET_TIMEOUT_SECONDS)
        if not self._closed:
            self._closed = True
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = SOCKET_TIMEOUT_SECONDS

            def setup(self) -> None:
                super().setup()
                if isinstance(self.connection, ssl.SSLSocket):
                    self.connection.do_handshake()

            def do_GET(self) -> None:
                fake._serve(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: object) -> None:  # quiet in tests
                return

        return Handler
