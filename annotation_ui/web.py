"""The annotation web app: one ASGI app per project, behind a session gate.

    rewardlab serve PROJECT [--host 127.0.0.1] [--port 7860]

    /login, /logout        our own login page (POST username + password, as gradio_client does)
    /media/<path>          the project's audio, only under its media root, only audio types
    /admin/export/<fmt>    judgments as parquet, jsonl or a zipped HF dataset (admins)
    /admin/...             the admin pages (Gradio), admins only; /admin redirects to /admin/
    /...                   the annotator's page and its API (Gradio)

`SessionGate` wraps everything, Gradio's own routes included: a request without a live
session cookie gets 401 (a browser asking for a page is sent to /login instead), a
non-admin gets 403 under /admin, and the annotator app's file routes (Gradio's
``/gradio_api/file=``, ``/upload``, ``/proxy=``: the page uses none of them) are closed to
everyone, so no annotator can read files another person's session left in Gradio's cache.
Gradio itself also gets the session's user through ``auth_dependency``, which makes
``gr.Request.username`` the logged-in annotator in every handler.

The session cookie is HttpOnly and SameSite=Lax (Secure over https), named after the project
so two projects served from one host do not log each other out.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from annotation_ui.admin import build_admin_page
from annotation_ui.annotate import build_annotate_page
from annotation_ui.presentation import AUDIO_MIME
from annotation_ui.service import MEDIA_ROUTE, AnnotationService
from rewardlab.audio import AudioError, resolve_media_path
from rewardlab.store import Store
from rewardlab.store.accounts import (
    SESSION_LIFETIME,
    Account,
    authenticate,
    close_session,
    open_session,
    session_account,
)

STATIC = Path(__file__).parent / "static"
ACCOUNT_SCOPE_KEY = "rewardlab.account"
PUBLIC_PATHS = {"/login", "/login/"}
# Gradio routes that read or write files: the annotator page needs none of them
CLOSED_FOR_ANNOTATOR_APP = (
    "/gradio_api/file=",
    "/gradio_api/file/",
    "/gradio_api/upload",
    "/gradio_api/proxy=",
)
SESSION_CACHE_S = 30.0  # how long a looked-up session is trusted before asking the store again
LOGIN_FAILURES_ALLOWED, LOGIN_LOCKOUT_S = 10, 900.0
MEMORY_ENTRIES = 10_000


def cookie_name(store: Store) -> str:
    project = hashlib.sha256(str(store.db_path.resolve()).encode()).hexdigest()[:10]
    return f"rewardlab_session_{project}"


class Sessions:
    """Session lookups with a short in-process cache, and the login throttle.

    Only live sessions are cached and both tables are emptied when they grow past
    `MEMORY_ENTRIES`, so requests with made-up cookies or names cannot fill the memory.
    """

    def __init__(self, store: Store):
        self.store = store
        self._cache: dict[str, tuple[Account, float]] = {}
        self._failures: dict[str, list[float]] = {}

    async def account(self, token: str | None) -> Account | None:
        if not token:
            return None
        cached = self._cache.get(token)
        if cached and time.monotonic() - cached[1] < SESSION_CACHE_S:
            return cached[0]
        # off the event loop: the store's lock may be held by a write for a moment
        account = await anyio.to_thread.run_sync(session_account, self.store, token)
        if account is not None:
            if len(self._cache) >= MEMORY_ENTRIES:
                self._cache.clear()
            self._cache[token] = (account, time.monotonic())
        return account

    def forget(self, token: str | None = None) -> None:
        """Drop a token from the cache, or (None) all of them: accounts changed."""
        if token is None:
            self._cache.clear()
        else:
            self._cache.pop(token, None)

    def locked_out(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(name, []) if now - t < LOGIN_LOCKOUT_S]
        if recent:
            self._failures[name] = recent
        else:
            self._failures.pop(name, None)
        return len(recent) >= LOGIN_FAILURES_ALLOWED

    def failed(self, name: str) -> None:
        if len(self._failures) >= MEMORY_ENTRIES:  # forget the oldest half of the names
            for stale in list(self._failures)[: MEMORY_ENTRIES // 2]:
                del self._failures[stale]
        self._failures.setdefault(name, []).append(time.monotonic())


class SessionGate:
    """ASGI middleware: no session, no access (see the module docstring)."""

    def __init__(self, app: ASGIApp, sessions: Sessions, cookie: str):
        self.app, self.sessions, self.cookie = app, sessions, cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = re.sub("/{2,}", "/", scope["path"])
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        account = await self.sessions.account(HTTPConnection(scope).cookies.get(self.cookie))
        admin_path = path == "/admin" or path.startswith("/admin/")
        if account is None:
            await self._refuse(scope, receive, send, 401, "log in first")
        elif admin_path and not account.is_admin:
            await self._refuse(scope, receive, send, 403, "admins only")
        elif not admin_path and path.startswith(CLOSED_FOR_ANNOTATOR_APP):
            await self._refuse(scope, receive, send, 403, "not served here")
        else:
            scope[ACCOUNT_SCOPE_KEY] = account
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, code: int, why: str):
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4000 + code})
            return
        request = Request(scope)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if code == 401 and wants_page:
            response = RedirectResponse(f"/login?next={_safe_next(scope['path'])}", 303)
        else:
            response = JSONResponse({"detail": why}, status_code=code)
        await response(scope, receive, send)


def _safe_next(path: str | None) -> str:
    """A local path to return to after login; anything else (//evil.example) becomes /."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def current_user(request: Request) -> str | None:
    """Gradio's auth_dependency: the account the gate found for this request."""
    account = request.scope.get(ACCOUNT_SCOPE_KEY)
    return account.id if account else None


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Log in · {project}</title>
<style>
body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; }}
form {{ display: grid; gap: .6rem; width: 18rem; }}
input, button {{ font: inherit; padding: .45rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="/login">
<h2>{project}</h2>
<p class="error">{error}</p>
<input type="hidden" name="next" value="{next}">
<label>Annotator id <input name="username" autocomplete="username" autofocus required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<button type="submit">Log in</button>
</form></body></html>
"""


def _login_page(store: Store, next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    body = LOGIN_PAGE.format(
        project=escape(store.settings.name), error=escape(error), next=escape(_safe_next(next_path))
    )
    return HTMLResponse(body, status_code=status)


def add_routes(app: FastAPI, store: Store, sessions: Sessions, cookie: str) -> None:
    @app.get("/login")
    def login_page(next: str = "/") -> HTMLResponse:
        return _login_page(store, next)

    @app.post("/login")
    @app.post("/login/")
    def login(
        request: Request, username: str = Form(), password: str = Form(), next: str = Form("/")
    ) -> Any:
        # a browser's form gets pages and redirects; an API client (gradio_client) gets JSON
        browser = "text/html" in request.headers.get("accept", "")
        name = username.strip()
        account = None if sessions.locked_out(name) else authenticate(store, name, password)
        if account is None:
            sessions.failed(name)
            message = "Wrong annotator id or password (or too many tries: wait 15 minutes)."
            if browser:
                return _login_page(store, next, message, status=401)
            return JSONResponse({"detail": message}, status_code=401)
        token = open_session(store, account.id)
        response: Any = (
            RedirectResponse(_safe_next(next), 303) if browser else JSONResponse({"success": True})
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
    def logout(request: Request) -> RedirectResponse:
        token = request.cookies.get(cookie)
        if token:
            close_session(store, token)
            sessions.forget(token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(cookie)
        return response

    @app.api_route(f"/{MEDIA_ROUTE}/{{path:path}}", methods=["GET", "HEAD"])
    def media(path: str) -> FileResponse:
        try:
            file = resolve_media_path(store.media_root, path)
        except AudioError:
            raise HTTPException(404, "no such clip") from None
        mime = AUDIO_MIME.get(file.suffix.lower())
        if mime is None or not file.is_file():
            raise HTTPException(404, "no such clip")
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        return FileResponse(file, media_type=mime, headers=headers)

    @app.get("/admin")
    def admin_root(request: Request) -> RedirectResponse:
        """The admin app is mounted at /admin/; /admin (as people type it) leads there."""
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/admin/{query}", 307)

    @app.get("/admin/export/{fmt}")
    def export(fmt: str) -> FileResponse:
        from rewardlab.store.export import export_hf, export_jsonl, export_parquet

        exporters = {"parquet": export_parquet, "jsonl": export_jsonl, "hf": export_hf}
        if fmt not in exporters:
            raise HTTPException(404, f"unknown format {fmt!r}: one of {sorted(exporters)}")
        scratch = Path(tempfile.mkdtemp(prefix="rewardlab-export-"))
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", store.settings.name).strip("-") or "project"
        out = exporters[fmt](store, scratch / f"{name}-judgments.{fmt}")
        if fmt == "hf":  # a folder: send it zipped
            out = Path(shutil.make_archive(str(scratch / f"{name}-judgments-hf"), "zip", out))
        return FileResponse(
            out,
            filename=out.name,
            background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
        )


def create_app(store: Store, service: AnnotationService | None = None) -> ASGIApp:
    """The whole app for one project's store (see the module docstring)."""
    # Gradio recomputes its API page's per-endpoint statistics (pandas, over up to 10,000
    # recent events) after every event by default: most of the server's CPU over a day of
    # annotation. Recompute them every 1,000 events instead.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    service = service or AnnotationService(store)
    sessions = Sessions(store)
    cookie = cookie_name(store)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_routes(app, store, sessions, cookie)
    common = {
        "auth_dependency": current_user,
        "footer_links": [],
        "run_history": False,  # it would keep judgments in the browser's storage
        "show_error": True,
        "theme": gr.themes.Default(font=["system-ui", "sans-serif"]),
    }
    admin = build_admin_page(service, on_accounts_changed=sessions.forget)
    app = gr.mount_gradio_app(app, admin, path="/admin", **common)
    annotate = build_annotate_page(service)
    head = f"<script>{(STATIC / 'annotate.js').read_text()}</script>"
    app = gr.mount_gradio_app(
        app, annotate, path="/", head=head, css=(STATIC / "annotate.css").read_text(), **common
    )
    return SessionGate(app, sessions, cookie)


def serve(project: Path, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Run the app until interrupted (uvicorn, one process: the store serialises writes)."""
    import uvicorn

    with Store(project) as store:
        print(f"rewardlab: annotating {store.settings.name!r} at http://{host}:{port}/", flush=True)
        uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
