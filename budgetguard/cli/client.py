"""Asking the running daemon from the command line: ``budgetguard gate`` in a CI pipeline.

The daemon already evaluates every SLO and knows every open incident, so a pipeline asks it rather than
Prometheus: one place decides, and Flagger, Argo Rollouts and CI get the same answer
(``GET /gates/release/{service}``). This module sends that one request and words the answer for people.

The standard library's urllib, not httpx: httpx lives in ``sources/`` and ``actions/`` (import contracts),
and one GET needs no connection pool. Network failures become ``DaemonUnreachable``; the token never
appears in a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from budgetguard.core.errors import DaemonUnreachable

DEFAULT_URL = "http://127.0.0.1:8731"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def ask_release(
    url: str,
    service: str,
    labels: Mapping[str, str],
    *,
    canary: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Answer:
    """``GET {url}/gates/release/{service}?canary=...&<labels>``: the daemon's release decision."""
    params = dict(labels)
    if canary:
        params["canary"] = canary
    query = f"?{urlencode(params)}" if params else ""
    target = f"{url.rstrip('/')}/gates/release/{quote(service, safe='')}{query}"
    headers = {"Accept": "application/json", "User-Agent": "budgetguard-gate"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # Here, not at the top: urllib.request brings http.client and email (20 ms), which only the one
    # request needs, not --help or check, which import this module for its DEFAULT_URL (#14).
    from urllib.request import Request, urlopen

    request = Request(target, headers=headers)
    try:
        with urlopen(request, timeout=timeout) as response:
            return Answer(response.status, _json(response.read()))
    except HTTPError as exc:  # an answer all the same: 4xx and 5xx carry the daemon's reason
        with exc:
            return Answer(exc.code, _json(exc.read()))
    except (URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaemonUnreachable(f"no answer from budgetguard at {url}: {reason}") from exc
    except ValueError as exc:  # a malformed URL
        raise DaemonUnreachable(f"cannot ask budgetguard at {url!r}: {exc}") from exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()[:300]
        return {"error": f"not a budgetguard answer: {text or '(empty body)'}"}
    return parsed if isinstance(parsed, dict) else {"error": f"not a budgetguard answer: {parsed!r}"}


def describe_release(data: Mapping[str, Any]) -> list[str]:
    """The release decision as lines for a CI log: the verdict, each SLO's part, when the budget recovers."""
    service = data.get("service")
    shadows = data.get("shadows", [])
    if data.get("ok") is True:
        lines = [f"go: releases of {service} may go"]
    elif data.get("frozen") or any(s.get("refused") for s in shadows):
        lines = [f"frozen: releases of {service} must wait"]
    else:
        lines = [f"no verdict for {service}"]
    for slo in data.get("slos", []):
        lines.append(f"  {slo['state']:8} {slo['reason']}")
        if slo.get("state") == "frozen":
            lines.append(f"  {'':8} recovery: {slo.get('recovery') or 'not estimated'}")
    for shadow in shadows:
        lines.append(f"  {'refused' if shadow.get('refused') else 'ok':8} {shadow['reason']}")
    if data.get("frozen"):
        lines.append(f"expected to recover: {data.get('recoveryAt') or 'unknown'}")
    return lines
