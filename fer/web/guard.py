"""Same-origin by default: an ASGI middleware that checks ``Origin`` and, where set, a token.

(``Host`` is checked by Starlette's ``TrustedHostMiddleware`` in front of it: a page of
another site whose name resolves to 127.0.0.1 reaches the server with its own name as
``Host``, the DNS rebinding attack.)

- ``Origin``, sent by browsers with every cross-site request and WebSocket, must be the
  served page's own (``http://<Host>``) or one configured; requests without it (curl,
  scripts) pass.
- With a token, every request must carry it: ``?token=`` (the page's address, as printed;
  the answer then sets an HttpOnly, SameSite=Strict cookie that the page's later requests
  carry), the cookie, or ``Authorization: Bearer <token>``.

Refused HTTP requests get 403 (Origin) or 401 (token) with a JSON ``detail``;
refused WebSockets are closed before they are accepted (the handshake answers 403).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
COOKIE = "fer_token"


class SameOrigin:
    """Wraps an ASGI ``app``; see the module's docstring.

    Args:
        origins: allowed ``Origin`` values besides ``http(s)://<Host>``.
        token: the secret every request must carry, or ``None``.
    """

    def __init__(self, app: Any, origins: Iterable[str] = (), token: str | None = None) -> None:
        self.app, self.token = app, token
        self.origins = {o.lower().rstrip("/") for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        origin = headers.get("origin", "").lower().rstrip("/")
        if origin and origin not in self.origins and origin not in (f"http://{host}", f"https://{host}"):
            return await _refuse(scope, send, 403, "requests from other sites are refused")
        if self.token is None:
            return await self.app(scope, receive, send)
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if given is not None and secrets.compare_digest(given, self.token):
            return await self.app(scope, receive, _with_cookie(send, self.token) if scope["type"] == "http" else send)
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if any(c and secrets.compare_digest(c, self.token) for c in (cookie and cookie.value, bearer)):
            return await self.app(scope, receive, send)
        return await _refuse(scope, send, 401, "this server needs its token: open the address it printed")


def _with_cookie(send: Send, token: str) -> Send:
    """``send`` that adds the token cookie to the response's headers."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return wrapped


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
