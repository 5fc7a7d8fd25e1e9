"""The whole canary loop on one machine, for the demo and the latency benchmark.

A live service with a stable version (v1) and canaries (v2, v3, ...) exporting request counters
(``lab.target``), a real Prometheus scraping it every second, ``budgetguard run`` as a subprocess
evaluating every second, a fake Kubernetes API holding one Argo Rollout per canary (``checkout-v2``,
...) and a Standard Webhooks receiver standing in for the people to tell. Everything listens on
127.0.0.1 and stops when the context exits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.error import URLError
from urllib.request import Request, urlopen

from lab.fakes import WebhookReceiver
from lab.fakes.kubernetes import K8S_TOKEN, KubernetesFake
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget

NAMESPACE = "shop"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# Windows for a 1 s scrape: 5s holds five samples, enough for rate() and for a failing canary to show
# within seconds; 30s gives the promotion gate more requests. (At a 15 s scrape keep the defaults, 1m
# and 5m: a window needs a few samples of every series.)
CANARY_WINDOWS = ("5s", "30s")
SLO_FILE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    description: 99.9% of checkout requests succeed.
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
      baseline: v1
      windows: [WINDOWS]
      on_burn: [abort-rollout]
      notify: [tell-people]
"""

CONFIG = """
listen: 127.0.0.1:{port}
interval: 1s
actions:
  abort-rollout:
    type: argo-rollouts
    api_url: {kubernetes}
    token: {token}
    namespace: {namespace}
    rollout: ${{service}}-${{canary}}
  tell-people:
    type: webhook
    url: {hook}
    secret: {secret}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CanaryLoop:
    """Start everything with ``with CanaryLoop() as loop:``; then ``deploy``, ``fail`` and watch."""

    def __init__(self, stable_rps: float = 50.0, seed: int | None = None) -> None:
        """``seed``: Poisson traffic from that seed (see ``lab.target``); smooth counters without one."""
        self._stack = ExitStack()
        self.stable_rps = stable_rps
        self.started = time.monotonic()
        self.dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="budgetguard-loop-")))
        self.target = MetricsTarget(seed=seed)
        self.kubernetes = KubernetesFake()
        self.hook = WebhookReceiver(secret=SECRET)
        self.prometheus: PrometheusLab | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "budgetguard.log"

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        self._stack.enter_context(self.kubernetes)
        self._stack.enter_context(self.hook)
        self.target.start()
        self._stack.callback(self.target.close)
        self.target.set_stream({"version": "v1"}, self.stable_rps, 0.0)
        self.prometheus = self._stack.enter_context(
            PrometheusLab(scrape_targets={"checkout": [self.target.address]})
        )
        self.prometheus.start()
        (self.dir / "slos").mkdir()
        slo_file = SLO_FILE.replace("WINDOWS", ", ".join(CANARY_WINDOWS))
        (self.dir / "slos" / "checkout.yaml").write_text(textwrap.dedent(slo_file))
        config = self.dir / "config.yaml"
        config.write_text(
            CONFIG.format(
                port=self.port,
                kubernetes=self.kubernetes.url,
                token=K8S_TOKEN,
                namespace=NAMESPACE,
                hook=self.hook.endpoint,
                secret=SECRET,
            )
        )
        log = self._stack.enter_context(self.log.open("wb"))
        self.daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "budgetguard",
                "run",
                str(self.dir / "slos"),
                "--config",
                str(config),
                "--prometheus",
                self.prometheus.url,
                "--db",
                str(self.dir / "budgetguard.db"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "BUDGETGUARD_LOG_LEVEL": "INFO"},
        )
        self._stack.callback(self._stop_daemon)
        self.wait(lambda: self.get("/readyz") is not None, 30, "budgetguard to be ready")

    def _stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(timeout=10)

    # --- acting on the service ---------------------------------------------------------------------

    def deploy(self, version: str, rps: float = 5.0, error_ratio: float = 0.0) -> None:
        """A new canary: its Rollout appears, and its pods start serving ``rps`` requests per second."""
        self.kubernetes.add_rollout(NAMESPACE, f"checkout-{version}", current_pod_hash=f"{version}hash")
        self.target.set_stream({"version": version}, rps, error_ratio)

    def fail(self, version: str, rps: float = 5.0, error_ratio: float = 0.2) -> None:
        self.target.set_stream({"version": version}, rps, error_ratio)

    def retire(self, version: str) -> None:
        """The canary's pods are gone: its series go stale and its incident resolves."""
        self.target.remove_stream({"version": version})

    # --- watching ----------------------------------------------------------------------------------

    def aborts(self, version: str | None = None) -> list[str]:
        """Rollouts the fake Kubernetes API was asked to abort (PATCH .../rollouts/NAME/status)."""
        names = [r.segments[-2] for r in self.kubernetes.requests if r.method == "PATCH"]
        return [n for n in names if version is None or n == f"checkout-{version}"]

    def get(self, path: str) -> Any:
        request = Request(self.url + path, headers={"Accept": "application/json"})
        try:
            with urlopen(request, timeout=5) as response:
                body = response.read()
        except (URLError, OSError):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def canaries(self) -> dict[str, dict[str, Any]]:
        found = self.get("/api/v1/slos")
        if not isinstance(found, dict):
            return {}
        return {c["value"]: c for slo in found.get("slos", []) for c in slo.get("canaries", [])}

    def wait(self, condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"budgetguard exited while waiting for {what}:\n{self.log.read_text()}")
            value = condition()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def logs(self) -> Iterator[str]:
        yield from self.log.read_text().splitlines()
