"""A FastAPI app profiled by ox_profile (see docs/asgi.md).

Run it with uvicorn::

    OX_PROFILE_TOKEN=secret .venv/bin/uvicorn examples.fastapi_app:app --port 8000

then open http://127.0.0.1:8000/login, give the token, press *Unpause* on the
status page and load /numbers, /report and /search a few times: each
endpoint's samples carry its route's path.  (Without OX_PROFILE_TOKEN a
random token is made and printed.)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import sys
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from examples.workloads import crunch_numbers, render_report, search_index
from ox_profile.ui.asgi import OxProfileApp, OxProfileMiddleware

TOKEN = os.environ.get("OX_PROFILE_TOKEN") or secrets.token_urlsafe(16)
if "OX_PROFILE_TOKEN" not in os.environ:
    print("ox_profile token for this run: %s" % TOKEN, file=sys.stderr)
TOKEN_COOKIE = "ox_profile_token"


def allowed(scope: dict) -> bool:
    """ox_profile's access check: the token as a bearer token or in the login cookie."""
    request = Request(scope)
    sent = request.headers.get("authorization", "")
    sent = sent[len("Bearer "):] if sent.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), TOKEN.encode())


app = FastAPI(title="ox_profile example")
app.add_middleware(OxProfileMiddleware)                              # label and time each request
app.mount("/ox_profile", OxProfileApp(authorize=allowed))            # the pages


STEP_SECONDS = 0.004  # each endpoint's CPU work per step (5 steps a request)


async def _steps(work, steps: int = 5) -> int:
    """``work`` in steps, giving the event loop to other requests between them."""
    total = 0
    for _ in range(steps):
        total += work(STEP_SECONDS)
        await asyncio.sleep(0)
    return total


@app.get("/numbers", response_class=PlainTextResponse)
async def numbers() -> str:
    return "numbers %d\n" % await _steps(crunch_numbers)


@app.get("/report", response_class=PlainTextResponse)
async def report() -> str:
    return "report %d\n" % await _steps(render_report)


@app.get("/search", response_class=PlainTextResponse)
async def search() -> str:
    return "search %d\n" % await _steps(search_index)


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict:
    return {"item": item_id}


@app.get("/fast", response_class=PlainTextResponse)
async def fast() -> str:
    return "ok\n"


@app.get("/login", response_class=HTMLResponse)
async def login_form() -> str:
    return ("<!doctype html><title>Log in</title><form method=post>"
            "<label>ox_profile token <input name=token id=token type=password></label> "
            "<button id=login type=submit>Log in</button></form>")


@app.post("/login")
async def login(request: Request) -> object:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    if not hmac.compare_digest(token.encode(), TOKEN.encode()):
        return HTMLResponse("<p>Wrong token. <a href='/login'>Again</a></p>", status_code=403)
    response = RedirectResponse("/ox_profile/status", status_code=303)
    response.set_cookie(TOKEN_COOKIE, TOKEN, httponly=True, samesite="strict")
    return response
