"""The annotation web app: one ASGI app per project, behind a session gate.

    rewardlab serve PROJECT [--host 127.0.0.1] [--port 7860]

    /login                 our own login page (POST username + password, as gradio_client does)
    /logout                a page whose button logs out (POST /logout)
    /media/<path>          the project's audio, only under its media root, only audio types
    /admin/export/<fmt>    judgments as parquet, jsonl or a zipped HF dataset (admins)
    /admin/...             the admin pages (Gradio), admins only; /admin redirects to /admin/
    /...                   the annotator's page and its API (Gradio)

`SessionGate` wraps everything, Gradio's own routes included (`annotation_ui.guard` holds its
rules):
- a request another site's page made the browser send (any POST, login and logout included)
  gets 403;
- a request without a live session cookie gets 401 (a browser asking for a page is sent to
  /login instead), a non-admin gets 403 under /admin;
- only the routes the pages use are served (`guard.allowed_route`): Gradio's uploads, file
  routes, ``process_recording``, ``monitoring`` and the rest answer 403;
- a Gradio session hash or event id belongs to the account that first used it: another
  account's queue stream, heartbeat or cancel gets 403;
- every answer carries `guard.SECURITY_HEADERS`; CORS headers only for the origins
  `rewardlab serve --allow-origin` names.
Gradio itself gets the session's user through ``auth_dependency``, which makes
``gr.Request.username`` the logged-in annotator in every handler, and shows users only the
app's own error messages (``show_error=False``).

Failed logins slow down the (address, name) and the address that made them
(`guard.LoginThrottle`); nothing is locked, and an admin can clear a delay on the accounts tab.
The session cookie is HttpOnly and SameSite=Lax (Secure over https), named after the project
so two projects served from one host do not log each other out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import anyio
import gradio as gr
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.background import BackgroundTask
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotation_ui.admin import build_admin_page
from annotation_ui.annotate import build_annotate_page
from annotation_ui.guard import (
    SECURITY_HEADERS,
    LoginThrottle,
    QueueOwners,
    ThrottleSettings,
    allowed_route,
    cross_site,
)
from annotation_ui.login import add_login_routes, safe_next
from annotation_ui.presentation import AUDIO_MIME
from annotation_ui.service import MEDIA_ROUTE, AnnotationService
from rewardlab.audio import AudioError, resolve_media_path
from rewardlab.store import Store
from rewardlab.store.accounts import (
    Account,
    session_account,
)

STATIC = Path(__file__).parent / "static"
ACCOUNT_SCOPE_KEY = "rewardlab.account"
PUBLIC_PATHS = {"/login", "/login/"}
SESSION_CACHE_S = 30.0  # how long a looked-up session is trusted before asking the store again
MEMORY_ENTRIES = 10_000
QUEUE_BODY_LIMIT = 4 * 2**20  # a queue request's JSON: form values, never files


def cookie_name(store: Store) -> str:
    project = hashlib.sha256(str(store.db_path.resolve()).encode()).hexdigest()[:10]
    return f"rewardlab_session_{project}"


class Sessions:
    """Session lookups with a short in-process cache, and the login throttle.

    Only live sessions are cached and the cache is emptied when it grows past
    `MEMORY_ENTRIES`, so requests with made-up cookies cannot fill the memory.
    """

    def __init__(self, store: Store, throttle: LoginThrottle | None = None):
        self.store = store
        self.throttle = throttle or LoginThrottle()
        self._cache: dict[str, tuple[Account, float]] = {}

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


class SessionGate:
    """ASGI middleware: no session, no access (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, sessions: Sessions, cookie: str, cors_origins: tuple[str, ...] = ()
    ):
        self.app, self.sessions, self.cookie = app, sessions, cookie
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.owners = QueueOwners()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        named_origin = origin is not None and origin in self.cors_origins
        send = self._headed(send, origin if named_origin else None)
        path = re.sub("/{2,}", "/", scope["path"])
        if named_origin and scope.get("method") == "OPTIONS":
            await Response(status_code=204, headers=self._preflight(scope))(scope, receive, send)
            return
        if not named_origin and cross_site(scope):
            await self._refuse(scope, receive, send, 403, "refused: sent from another site")
            return
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        account = await self.sessions.account(HTTPConnection(scope).cookies.get(self.cookie))
        admin_path = path == "/admin" or path.startswith("/admin/")
        if account is None:
            await self._refuse(scope, receive, send, 401, "log in first")
        elif admin_path and not account.is_admin:
            await self._refuse(scope, receive, send, 403, "admins only")
        elif not allowed_route(path):
            await self._refuse(scope, receive, send, 403, "not served here")
        else:
            try:
                receive, send = await self._owned_queue(scope, path, account.id, receive, send)
            except QueueRefusal as refusal:
                await self._refuse(scope, receive, send, refusal.code, str(refusal))
                return
            scope[ACCOUNT_SCOPE_KEY] = account
            await self.app(scope, receive, send)

    async def _owned_queue(
        self, scope: Scope, path: str, account_id: str, receive: Receive, send: Send
    ) -> tuple[Receive, Send]:
        """Claims (or checks) the session hash and event id the request names for the account;
        the event ids the queue hands out are claimed before their answer leaves."""
        prefix, inner = ("/admin", path[6:]) if path.startswith("/admin/") else ("", path)
        keys: list[str] = []
        hands_out_event = False
        if inner.startswith("/gradio_api/heartbeat/"):
            keys.append("session:" + inner.rsplit("/", 1)[1])
        elif inner == "/gradio_api/queue/data":
            keys.append("session:" + HTTPConnection(scope).query_params.get("session_hash", ""))
        elif scope.get("method") == "POST" and (
            inner in ("/gradio_api/queue/join", "/gradio_api/cancel")
            or inner.startswith("/gradio_api/call/")
        ):
            body, receive = await read_body(receive, QUEUE_BODY_LIMIT)
            named = _json_fields(body, ("session_hash", "event_id"))
            keys += [f"{field[:-5] if field == 'session_hash' else 'event'}:{value}"
                     for field, value in named.items()]  # fmt: skip
            hands_out_event = inner != "/gradio_api/cancel"
        elif inner.startswith("/gradio_api/call/") and inner.count("/") >= 4:
            keys.append("event:" + inner.rsplit("/", 1)[1])
        for key in keys:
            if not self.owners.claim(prefix + key, account_id):
                raise QueueRefusal(403, "this session belongs to another account")
        if hands_out_event:
            send = self._claiming_events(send, prefix, account_id)
        return receive, send

    def _claiming_events(self, send: Send, prefix: str, account_id: str) -> Send:
        body = bytearray()

        async def claiming(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body") and len(body) < 65536:
                    event_id = _json_fields(bytes(body), ("event_id",)).get("event_id")
                    if event_id:
                        self.owners.claim(f"{prefix}event:{event_id}", account_id)
            await send(message)

        return claiming

    def _headed(self, send: Send, cors_origin: str | None) -> Send:
        """`send` adding the security headers, and CORS headers only for a named origin."""

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name in {k for k in headers if k.startswith("access-control-")}:
                    del headers[name]
                if cors_origin:
                    headers["access-control-allow-origin"] = cors_origin
                    headers["access-control-allow-credentials"] = "true"
                    headers.append("vary", "Origin")
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        return headed

    @staticmethod
    def _preflight(scope: Scope) -> dict[str, str]:
        asked = Headers(scope=scope).get("access-control-request-headers", "")
        return {"access-control-allow-methods": "GET, POST", "access-control-allow-headers": asked,
                "access-control-max-age": "600"}  # fmt: skip

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, code: int, why: str):
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4000 + code})
            return
        request = Request(scope)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if code == 401 and wants_page:
            response = RedirectResponse(f"/login?next={safe_next(scope['path'])}", 303)
        else:
            response = JSONResponse({"detail": why}, status_code=code)
        await response(scope, receive, send)


class QueueRefusal(Exception):
    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


async def read_body(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it to the app once more."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise QueueRefusal(400, "the request ended early")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise QueueRefusal(413, f"a queue request is at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body, replayed = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _json_fields(body: bytes, fields: tuple[str, ...]) -> dict[str, str]:
    """The named string fields of a JSON object body (none when it is not one)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {f: data[f] for f in fields if isinstance(data.get(f), str) and data[f]}


def current_user(request: Request) -> str | None:
    """Gradio's auth_dependency: the account the gate found for this request."""
    account = request.scope.get(ACCOUNT_SCOPE_KEY)
    return account.id if account else None


def add_routes(app: FastAPI, store: Store, sessions: Sessions, cookie: str) -> None:
    add_login_routes(app, store, sessions, cookie)

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


def create_app(
    store: Store,
    service: AnnotationService | None = None,
    *,
    throttle: ThrottleSettings | None = None,
    cors_origins: tuple[str, ...] = (),
) -> ASGIApp:
    """The whole app for one project's store (see the module docstring); `cors_origins`: the
    only other origins whose pages may call the app with the user's cookie."""
    # Gradio recomputes its API page's per-endpoint statistics (pandas, over up to 10,000
    # recent events) after every event by default: most of the server's CPU over a day of
    # annotation. Recompute them every 1,000 events instead.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    service = service or AnnotationService(store)
    sessions = Sessions(store, LoginThrottle(throttle))
    cookie = cookie_name(store)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_routes(app, store, sessions, cookie)
    common = {
        "auth_dependency": current_user,
        "footer_links": [],
        "run_history": False,  # it would keep judgments in the browser's storage
        "show_error": False,  # users see the app's own messages (gr.Error), not exceptions
        "theme": gr.themes.Default(font=["system-ui", "sans-serif"]),
    }
    admin = build_admin_page(
        service, on_accounts_changed=sessions.forget, throttle=sessions.throttle
    )
    app = gr.mount_gradio_app(app, admin, path="/admin", **common)
    annotate = build_annotate_page(service)
    head = f"<script>{(STATIC / 'annotate.js').read_text()}</script>"
    app = gr.mount_gradio_app(
        app, annotate, path="/", head=head, css=(STATIC / "annotate.css").read_text(), **common
    )
    return SessionGate(app, sessions, cookie, cors_origins)


def serve(
    project: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    throttle: ThrottleSettings | None = None,
    cors_origins: tuple[str, ...] = (),
) -> None:
    """Run the app until interrupted (uvicorn, one process: the store serialises writes)."""
    import uvicorn

    with Store(project) as store:
        print(f"rewardlab: annotating {store.settings.name!r} at http://{host}:{port}/", flush=True)
        app = create_app(store, throttle=throttle, cors_origins=cors_origins)
        uvicorn.run(app, host=host, port=port, log_level="warning")
