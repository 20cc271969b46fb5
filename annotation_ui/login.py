"""Logging in and out: the login page and form, the throttle's answers, the session cookie.

    GET  /login            the form          POST /login    check, then a session cookie
    GET  /logout           a logout button   POST /logout   end the session

A browser's form gets pages and redirects; an API client (gradio_client) gets JSON. Logout
is a POST so that no page of another site can end a session with a link or a redirect (the
session gate refuses cross-site POSTs, login's included).
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from rewardlab.store import Store
from rewardlab.store.accounts import SESSION_LIFETIME, authenticate, close_session, open_session

if TYPE_CHECKING:
    from annotation_ui.web import Sessions

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} · {project}</title>
<style>
body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; }}
form {{ display: grid; gap: .6rem; width: 18rem; }}
input, button {{ font: inherit; padding: .45rem; }}
.error {{ color: #b00020; }}
</style></head>
<body>{form}</body></html>
"""
LOGIN_FORM = """<form method="post" action="/login">
<h2>{project}</h2>
<p class="error">{error}</p>
<input type="hidden" name="next" value="{next}">
<label>Annotator id <input name="username" autocomplete="username" autofocus required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<button type="submit">Log in</button>
</form>"""
LOGOUT_FORM = """<form method="post" action="/logout">
<h2>{project}</h2>
<button type="submit" autofocus>Log out</button>
<a href="/">back to the annotation page</a>
</form>"""
WRONG = "Wrong annotator id or password."


def safe_next(path: str | None) -> str:
    """A local path to return to after login; anything else (//evil.example) becomes /."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _page(store: Store, title: str, form: str, status: int = 200, **fields: str) -> HTMLResponse:
    project = escape(store.settings.name)
    body = form.format(project=project, **{k: escape(v) for k, v in fields.items()})
    return HTMLResponse(PAGE.format(title=title, project=project, form=body), status_code=status)


def login_page(store: Store, next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    return _page(store, "Log in", LOGIN_FORM, status, error=error, next=safe_next(next_path))


def add_login_routes(app: FastAPI, store: Store, sessions: Sessions, cookie: str) -> None:
    @app.get("/login")
    def show_login(next: str = "/") -> HTMLResponse:
        return login_page(store, next)

    @app.post("/login")
    @app.post("/login/")
    def login(
        request: Request, username: str = Form(), password: str = Form(), next: str = Form("/")
    ) -> Any:
        browser = "text/html" in request.headers.get("accept", "")
        name = username.strip()
        address = request.client.host if request.client else "unknown"
        wait = sessions.throttle.wait_s(address, name)
        # the password is checked whether or not the throttle holds the request: same cost
        account = authenticate(store, name, password)
        if wait > 0:
            seconds = math.ceil(wait)
            message = f"Too many failed logins from here: try again in {seconds} s."
            headers = {"Retry-After": str(seconds)}
            if browser:
                page = login_page(store, next, message, status=429)
                page.headers.update(headers)
                return page
            return JSONResponse({"detail": message}, status_code=429, headers=headers)
        if account is None:
            sessions.throttle.failed(address, name)
            if browser:
                return login_page(store, next, WRONG, status=401)
            return JSONResponse({"detail": WRONG}, status_code=401)
        sessions.throttle.succeeded(address, name)
        token = open_session(store, account.id)
        response: Any = (
            RedirectResponse(safe_next(next), 303) if browser else JSONResponse({"success": True})
        )
        response.set_cookie(
            cookie,
            token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    @app.get("/logout")
    def show_logout() -> HTMLResponse:
        return _page(store, "Log out", LOGOUT_FORM)

    @app.post("/logout")
    def logout(request: Request) -> RedirectResponse:
        token = request.cookies.get(cookie)
        if token:
            close_session(store, token)
            sessions.forget(token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(cookie)
        return response
