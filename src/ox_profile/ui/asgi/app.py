"""The ox_profile pages as an ASGI app, to mount in any ASGI application
(``app.mount("/ox_profile", OxProfileApp(authorize=...))`` in Starlette and
FastAPI).

Access: ``authorize(scope)`` (plain or async) decides each request; only
``True`` lets it in, anything else is refused with a 403 page, and without
``authorize`` nobody gets in.  CSRF: the pages' forms carry a token that is
also in a cookie (``HttpOnly``, ``SameSite=Strict``) and signed with a
per-process secret (``csrf_secret`` to share one between processes); a POST
needs both, equal (compared in constant time), and is refused when its
``Origin`` or ``Sec-Fetch-Site`` names another site.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Mapping, MutableMapping, Optional, Tuple, Union
from urllib.parse import parse_qsl

from ox_profile.ui.core import guard, site
from ox_profile.ui.core.control import ProfilerControl, default_control

__all__ = ["OxProfileApp", "CSRF_COOKIE", "MAX_FORM_BYTES"]

log = logging.getLogger("ox_profile.asgi")

#: The cookie that holds the CSRF token.
CSRF_COOKIE = "ox_profile_csrf"
#: The cookie that carries an action's messages to the next page (signed).
FLASH_COOKIE = "ox_profile_flash"
#: Largest POST body read (the forms send a few dozen bytes).
MAX_FORM_BYTES = 64 * 1024

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]
Authorize = Callable[[Scope], Union[bool, Awaitable[bool]]]


def _first_values(pairs: List[Tuple[str, str]]) -> Dict[str, str]:
    values: Dict[str, str] = {}
    for name, value in pairs:
        values.setdefault(name, value)
    return values


def _headers(scope: Scope) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _cookies(header: str) -> Dict[str, str]:
    cookies: Dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies.setdefault(name, value)
    return cookies


def _host_url(scope: Scope, headers: Mapping[str, str]) -> str:
    scheme = scope.get("scheme") or "http"
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else "%s:%s" % (server[0], server[1])
    return "%s://%s/" % (scheme, host)


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"") or b""
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _run_in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a worker thread: page builds must not stall the event loop."""
    try:
        import anyio.to_thread
    except ImportError:  # pragma: no cover - every ASGI server we know brings anyio
        import asyncio
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)
    return await anyio.to_thread.run_sync(func, *args)


class OxProfileApp:
    """The ox_profile pages (status, JSON, flame graph, downloads, request
    timing, controls) as an ASGI app, for ``control`` (the process's
    :func:`~ox_profile.ui.core.control.default_control` unless given: the one
    :class:`~ox_profile.ui.asgi.OxProfileMiddleware` times requests into)."""

    def __init__(self, *, authorize: Optional[Authorize] = None, control: Optional[ProfilerControl] = None,
                 csrf_secret: Optional[bytes] = None, max_form_bytes: int = MAX_FORM_BYTES) -> None:
        self.authorize = authorize
        self.control = control if control is not None else default_control()
        self.tokens = guard.SignedTokens(csrf_secret)
        self.max_form_bytes = max_form_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        response, cookies = await self._respond(scope, receive)
        headers = [(b"content-type", response.content_type.encode("latin-1")),
                   (b"content-length", str(len(response.body)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        headers += [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _allowed(self, scope: Scope) -> Optional[Tuple[str, str]]:
        """None when ``authorize`` lets the request in, else (message, help) of the refusal."""
        if self.authorize is None:
            return ("ox_profile access control is not configured.",
                    "Pass authorize=<a function of the request's scope that returns True for "
                    "allowed users> to OxProfileApp.")
        try:
            verdict = self.authorize(scope)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:  # noqa: BLE001 - a failing check refuses, it does not crash the page
            log.exception("ox_profile: authorize raised for %s %s: refused", scope.get("method"), scope.get("path"))
            verdict = None
        if verdict is True:
            return None
        if verdict is not False and verdict is not None:
            log.warning("ox_profile: authorize returned a %s for %s %s, which is not True (allow) or "
                        "False (refuse): refused", type(verdict).__name__, scope.get("method"), scope.get("path"))
        return ("You are not allowed to use ox_profile.",
                "Access is decided by this site's own check, which refused this request; "
                "ask an administrator of this site for access.")

    def _flashed(self, cookies: Mapping[str, str]) -> List[str]:
        """The messages of the action just done (from its signed cookie)."""
        value = self.tokens.unsign(cookies.get(FLASH_COOKIE))
        if not value:
            return []
        try:
            messages = json.loads(base64.urlsafe_b64decode(value.encode()).decode())
        except ValueError:
            return []
        return [str(m) for m in messages][:10] if isinstance(messages, list) else []

    def _flash_cookie(self, messages: List[str], path: str, secure: str) -> str:
        value = base64.urlsafe_b64encode(json.dumps(messages[:10]).encode()).decode()
        return "%s=%s; Path=%s; HttpOnly; SameSite=Strict%s" % (FLASH_COOKIE, self.tokens.sign(value), path, secure)

    async def _respond(self, scope: Scope, receive: Receive) -> Tuple[site.WebResponse, List[str]]:
        response, cookies, flashed = await self._answer(scope, receive)
        secure = "; Secure" if scope.get("scheme") in ("https", "wss") else ""
        path = str(scope.get("root_path") or "") or "/"
        if response.flash:
            cookies.append(self._flash_cookie(response.flash, path, secure))
        elif flashed and response.status == 200 and response.content_type.startswith("text/html"):
            cookies.append("%s=; Path=%s; Max-Age=0; HttpOnly; SameSite=Strict%s" % (FLASH_COOKIE, path, secure))
        return response, cookies

    async def _answer(self, scope: Scope, receive: Receive) -> Tuple[site.WebResponse, List[str], List[str]]:
        headers = _headers(scope)
        root = str(scope.get("root_path") or "")
        path = str(scope.get("path") or "")
        if root and path.startswith(root):
            path = path[len(root):]
        query = scope.get("query_string", b"").decode("latin-1")
        args = _first_values(parse_qsl(query, keep_blank_values=True, errors="replace"))
        cookies = _cookies(headers.get("cookie", ""))
        cookie_token = cookies.get(CSRF_COOKIE)
        token = cookie_token if self.tokens.valid(cookie_token) else None
        new_cookies = []
        if token is None:
            token = self.tokens.new()
            secure = "; Secure" if scope.get("scheme") in ("https", "wss") else ""
            new_cookies.append("%s=%s; Path=%s; HttpOnly; SameSite=Strict%s" % (CSRF_COOKIE, token, root or "/", secure))
        flashed = self._flashed(cookies)
        req = site.WebRequest(method=str(scope.get("method", "GET")).upper(), path=path or "/", base=root,
                              host_url=_host_url(scope, headers), args=args, headers=headers,
                              csrf_token=token, messages=flashed)
        refusal = await self._allowed(scope)
        if refusal is not None:
            return site.denied(req, *refusal), new_cookies, []
        if req.method == "POST":
            try:
                body = await _read_body(receive, self.max_form_bytes)
            except _BodyTooLarge:
                return site.denied(req, "The form is too large (at most %d bytes)." % self.max_form_bytes,
                                   "", status=413), new_cookies, []
            if headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
                req.form = _first_values(parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                                   errors="replace"))
            sent = req.form.get(guard.CSRF_FIELD) or headers.get(guard.CSRF_HEADER.lower())
            req.csrf_valid = cookie_token is not None and token == cookie_token and guard.tokens_match(token, sent)
            if req.csrf_valid and guard.cross_origin_post(headers.get("origin"), headers.get("sec-fetch-site"),
                                                          headers.get("referer"), req.host_url):
                log.warning("ox_profile: refused POST %s from another site (Origin %r)", path, headers.get("origin"))
                return site.denied(req, "This action was requested by a page of another site, and was not done.",
                                   "Use the buttons of the ox_profile status page."), new_cookies, []
        response = await _run_in_thread(site.handle, self.control, req)
        return response, new_cookies, flashed
