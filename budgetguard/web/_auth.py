"""The one auth helper of the HTTP surface, and the one shape of an error answer.

With an ``api_token`` configured, the JSON API and the gates need ``Authorization: Bearer <token>``;
Flagger sends no headers, so its gates also accept the token as the webhook's ``metadata.token``.
Tokens are compared in constant time. Without a token everything is open (the daemon warns at start
when it listens beyond loopback that way).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Scope

BEARER_NEEDED = "this API needs 'Authorization: Bearer <token>' (the configured api_token)"
FLAGGER_TOKEN_NEEDED = (
    "this gate needs the configured api_token as the webhook's metadata.token "
    "(Flagger sends no headers) or as 'Authorization: Bearer <token>'"
)


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


@dataclass(frozen=True)
class Auth:
    """The configured API token (None: open) and how a request proves it knows it."""

    token: str | None

    def matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def authorised(self, request: Request, *, metadata_token: str | None = None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.matches(given.strip()):
            return True
        return metadata_token is not None and self.matches(metadata_token)

    def refusal_before_body(self, scope: Scope) -> str | None:
        """The 401 message for a request refused on its headers alone, before its body is read: a path
        that needs a token and can only get it from the Authorization header. Flagger's gates take the
        token in their body, and /metrics, /healthz and /readyz need none, so they are left to the routes.
        """
        path = str(scope.get("path", ""))
        if self.token is None or not path.startswith(("/api/", "/gates/")):
            return None
        if path.startswith("/gates/flagger/"):
            return None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and self.matches(given.strip()):
                    return None
        return BEARER_NEEDED

    def refusal(
        self, request: Request, *, flagger: bool = False, metadata_token: str | None = None
    ) -> JSONResponse | None:
        """None when the request may go on, else the 401 answer to send back.

        ``flagger``: a gate Flagger calls, which also takes the token its webhook carries in its body
        (``metadata_token``), and says so when refusing.
        """
        if self.authorised(request, metadata_token=metadata_token):
            return None
        response = error(401, FLAGGER_TOKEN_NEEDED if flagger else BEARER_NEEDED)
        response.headers["WWW-Authenticate"] = 'Bearer realm="budgetguard"'
        return response
