"""Security of the running app over real HTTP: sessions on every route (Gradio's own too),
admins only under /admin, media confined to its root, the login's cookie and throttle, the
routes served, cross-site requests, CORS, queue streams tied to their account, headers.

Throttle tests log in from other loopback addresses (127.0.0.2, ...): the server tells
clients apart by address, and each test's failures stay its own."""

from __future__ import annotations

import http.client
import io
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import polars as pl
import pytest
from app_harness import APP_WORLD, PASSWORDS, login, make_app_project, running_app

from annotation_ui.guard import ThrottleSettings
from rewardlab.store import Store

NAMED_ORIGIN = "https://labelling.example:8443"  # the one origin `--allow-origin` names
FOREIGN_ORIGIN = "http://127.0.0.1:9999"  # another port of the same host
# the server's first login delay (`serve --login-first-delay`): long enough that a slow machine
# cannot let it pass between two requests of a test
FIRST_DELAY_S = 30


@pytest.fixture(scope="module")
def app(tmp_path_factory, demo_world) -> tuple[str, Path, str]:
    root = tmp_path_factory.mktemp("security")
    project = make_app_project(root, demo_world(**APP_WORLD))
    media = project / "media"
    (media / "notes.txt").write_text("not audio")
    (media / "escape.flac").symlink_to(project / "project.sqlite")
    (media / "outside").symlink_to(root)
    (root / "secret.flac").write_bytes((next((media / "tts").iterdir())).read_bytes())
    with Store(project) as store:
        clip = store.task("spoken-t").policy.audio.path
    flags = ["--allow-origin", NAMED_ORIGIN, "--login-first-delay", str(FIRST_DELAY_S)]
    with running_app(project, root / "server.log", *flags) as url:
        yield url, project, clip


def client_from(address: str, url: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches the server)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, timeout=30)


def raw_get(url: str, path: str, cookie: str = "") -> tuple[int, bytes]:
    """GET exactly `path` (http.client sends it as given: no dot-segment clean-up)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def cookie_header(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


ROUTES = [
    ("GET", "/"),
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=x"),
    ("POST", "/gradio_api/call/next_task"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/heartbeat/x"),
    ("GET", "/gradio_api/file=/etc/hostname"),
    ("GET", "/theme.css"),
    ("GET", "/admin/"),
    ("GET", "/admin/config"),
    ("POST", "/admin/gradio_api/queue/join"),
    ("GET", "/admin/export/parquet"),
    ("GET", "/logout"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_session_every_route_is_refused(app, method: str, path: str):
    url, _, _ = app
    for cookies in ({}, {"rewardlab_session_forged": "x"}):
        response = httpx.request(method, url + path, json={}, cookies=cookies)
        assert response.status_code == 401, (path, response.text[:200])


def test_without_a_session_media_is_refused_and_pages_send_you_to_login(app):
    url, _, clip = app
    assert httpx.get(f"{url}/media/{clip}").status_code == 401
    page = httpx.get(f"{url}/admin/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/admin/"
    assert httpx.get(f"{url}/login").status_code == 200


def test_an_annotator_gets_page_media_and_api_but_not_admin_or_gradio_files(app):
    url, project, clip = app
    with login(url, "ann-1") as ann:
        assert ann.get("/", headers={"Accept": "text/html"}).status_code == 200
        assert ann.get("/gradio_api/info").status_code == 200
        audio = ann.get(f"/media/{clip}")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
        assert audio.content == (project / "media" / clip).read_bytes()
        partial = ann.get(f"/media/{clip}", headers={"Range": "bytes=0-99"})
        assert partial.status_code == 206 and len(partial.content) == 100  # players seek
        for path in ("/admin/", "/admin/export/parquet", "/admin/gradio_api/info"):
            assert ann.get(path).status_code == 403, path
        assert ann.post("/admin/gradio_api/queue/join", json={}).status_code == 403
        for path in (f"/gradio_api/file={project / 'media' / clip}", "/gradio_api/file=x"):
            assert ann.get(path).status_code == 403, path
        upload = ann.post("/gradio_api/upload", files={"files": ("a.txt", b"x")})
        assert upload.status_code == 403


ESCAPES = [
    "/media/../project.sqlite",
    "/media/tts/../../project.sqlite",
    "/media/%2e%2e/project.sqlite",
    "/media/..%2fproject.sqlite",
    "/media/tts%2f..%2f..%2fproject.sqlite",
    "/media//etc/passwd",
    "/media/%2fetc%2fpasswd",
    "/media/escape.flac",  # a symlink inside the root pointing out of it
    "/media/outside/secret.flac",  # a folder symlink out of the root
    "/media/notes.txt",  # inside, but not audio
    "/media/tts",
    "/media/..\\project.sqlite",
]


def test_media_paths_cannot_escape_the_media_root(app):
    url, _, clip = app
    with login(url, "ann-1") as ann:
        cookie = cookie_header(ann)
        assert raw_get(url, f"/media/{clip}", cookie)[0] == 200
        for path in ESCAPES:
            status, body = raw_get(url, path, cookie)
            assert status in (400, 404), (path, status)
            assert b"SQLite" not in body and b"root:" not in body, path


def test_admins_export_the_judgments(app):
    url, project, _ = app
    with login(url, "admin") as admin:
        parquet = admin.get("/admin/export/parquet")
        assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
        assert pl.read_parquet(io.BytesIO(parquet.content)).height == 0
        assert admin.get("/admin/export/jsonl").status_code == 200
        hf = admin.get("/admin/export/hf")
        assert "dataset_info.json" in zipfile.ZipFile(io.BytesIO(hf.content)).namelist()
        assert admin.get("/admin/export/csv").status_code == 404
        assert admin.get("/admin/", headers={"Accept": "text/html"}).status_code == 200
        bare = admin.get("/admin", headers={"Accept": "text/html"})  # as the README writes it
        assert (bare.status_code, bare.headers["location"]) == (307, "/admin/")
        followed = admin.get("/admin", headers={"Accept": "text/html"}, follow_redirects=True)
        assert followed.status_code == 200 and str(followed.url) == f"{url}/admin/"
        assert "rewardlab admin" in followed.text
        assert admin.get(f"/gradio_api/file={project / 'project.sqlite'}").status_code == 403


def test_the_session_cookie_logout_and_the_login_redirect(app):
    url, _, _ = app
    response = httpx.post(
        f"{url}/login",
        data={"username": "ann-2", "password": PASSWORDS["ann-2"], "next": "//evil.example/x"},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http on localhost: set only over https
    with httpx.Client(base_url=url, cookies=response.cookies) as browser:
        assert browser.get("/gradio_api/info").status_code == 200
        assert "Log out" in browser.get("/logout").text  # a GET only shows the button
        assert browser.get("/gradio_api/info").status_code == 200
        assert browser.post("/logout").status_code == 303
    with httpx.Client(base_url=url, cookies=response.cookies) as stale:
        assert stale.get("/gradio_api/info").status_code == 401  # the session is gone
    wrong = httpx.post(
        f"{url}/login",
        data={"username": "ann-2", "password": "nope"},
        headers={"Accept": "text/html"},
    )
    assert wrong.status_code == 401 and "Wrong annotator id or password" in wrong.text


DEFAULTS = ThrottleSettings()


def test_failures_slow_that_address_and_name_but_never_lock_the_account(app):
    url, _, _ = app
    right = {"username": "admin", "password": PASSWORDS["admin"]}
    with client_from("127.0.0.2", url) as attacker:
        for _ in range(DEFAULTS.free_failures):
            assert attacker.post("/login", data=right | {"password": "x"}).status_code == 401
        # past the allowance: this address must wait before trying this name again ...
        held = attacker.post("/login", data=right)
        assert held.status_code == 429
        assert FIRST_DELAY_S - 5 <= int(held.headers["retry-after"]) <= FIRST_DELAY_S
    # the owner, from anywhere else, is not held at all
    with client_from("127.0.0.5", url) as owner:
        assert owner.post("/login", data=right).status_code == 200


def test_spraying_one_password_over_many_names_is_slowed(app):
    url, _, _ = app
    with client_from("127.0.0.3", url) as sprayer:
        answers = [
            sprayer.post("/login", data={"username": f"name-{i}", "password": "Summer2026!"})
            for i in range(DEFAULTS.address_free_failures + 1)
        ]
        codes = [a.status_code for a in answers]
        assert codes[:-1] == [401] * DEFAULTS.address_free_failures and codes[-1] == 429
        # a right password from that address waits too: the address is slowed as a whole
        right = {"username": "ann-3", "password": PASSWORDS["ann-3"]}
        assert sprayer.post("/login", data=right).status_code == 429
    with client_from("127.0.0.6", url) as elsewhere:
        assert elsewhere.post("/login", data=right).status_code == 200


def test_a_held_login_costs_what_a_checked_one_does(app):
    """The password is checked either way: the answer's time does not show the hold."""
    url, _, _ = app
    wrong = {"username": "ann-4", "password": "not-it"}

    def timed(client: httpx.Client, expected: int) -> float:
        answer = client.post("/login", data=wrong)
        assert answer.status_code == expected
        return answer.elapsed.total_seconds()

    with client_from("127.0.0.4", url) as client:
        checked = sorted(timed(client, 401) for _ in range(DEFAULTS.free_failures))
        held = sorted(timed(client, 429) for _ in range(5))
    # medians: a held answer skipping the password check would take a few ms, not ~30
    assert held[2] > 0.5 * checked[2], (held, checked)


def test_cross_site_posts_are_refused_and_logout_needs_a_post(app):
    url, _, _ = app
    with login(url, "ann-1") as ann:
        # a form another site's page submits: the browser marks it, or at least names its origin
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": FOREIGN_ORIGIN}, {"Origin": "null"}):  # fmt: skip
            login_csrf = httpx.post(
                f"{url}/login",
                data={"username": "ann-2", "password": PASSWORDS["ann-2"]},
                headers=headers,
            )
            assert login_csrf.status_code == 403 and "set-cookie" not in login_csrf.headers
            assert ann.post("/logout", headers=headers).status_code == 403
            join = ann.post("/gradio_api/queue/join", json={"session_hash": "s"}, headers=headers)
            assert join.status_code == 403
        assert ann.get("/logout").status_code == 200  # a link or redirect only shows the button
        assert ann.get("/gradio_api/info").status_code == 200  # still logged in
        same_page = {"Sec-Fetch-Site": "same-origin", "Origin": url}
        assert ann.post("/logout", headers=same_page).status_code == 303
        assert ann.get("/gradio_api/info").status_code == 401


def test_no_credentialed_cors_except_for_a_named_origin(app):
    url, _, _ = app
    with login(url, "ann-1") as ann:
        for path in ("/gradio_api/user", "/config", "/gradio_api/info"):
            foreign = ann.get(path, headers={"Origin": FOREIGN_ORIGIN})
            assert not any(h.startswith("access-control-") for h in foreign.headers), path
        preflight = ann.options(
            "/gradio_api/queue/join",
            headers={"Origin": FOREIGN_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        named = ann.get("/config", headers={"Origin": NAMED_ORIGIN})
        assert named.headers["access-control-allow-origin"] == NAMED_ORIGIN
        assert named.headers["access-control-allow-credentials"] == "true"


def api_id(config: dict, api_name: str) -> int:
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def test_a_queue_stream_answers_only_the_account_that_opened_it(app):
    url, _, _ = app
    with login(url, "ann-1") as owner, login(url, "ann-2") as other:
        fn = api_id(owner.get("/config").json(), "progress")
        join = {"data": [], "fn_index": fn, "session_hash": "owner-hash-1", "trigger_id": None}
        assert owner.post("/gradio_api/queue/join", json=join).status_code == 200
        # another account naming the owner's session hash, on every queue route, gets nothing
        data = "/gradio_api/queue/data?session_hash=owner-hash-1"
        assert other.get(data).status_code == 403
        assert other.get("/gradio_api/heartbeat/owner-hash-1").status_code == 403
        assert other.post("/gradio_api/queue/join", json=join).status_code == 403
        cancel = {"session_hash": "owner-hash-1", "fn_index": fn, "event_id": "e"}
        assert other.post("/gradio_api/cancel", json=cancel).status_code == 403
        stream = owner.get(data)
        assert stream.status_code == 200 and "process_completed" in stream.text
        # the event ids the queue hands out belong to the account that asked
        event = owner.post("/gradio_api/call/progress", json={"data": []}).json()["event_id"]
        assert other.get(f"/gradio_api/call/progress/{event}").status_code == 403
        result = owner.get(f"/gradio_api/call/progress/{event}")
        assert result.status_code == 200 and "event: complete" in result.text


CLOSED = [
    ("POST", "/gradio_api/process_recording"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/upload_progress?upload_id=x"),
    ("GET", "/monitoring"),
    ("GET", "/monitoring/summary"),
    ("POST", "/gradio_api/reset"),
    ("GET", "/gradio_api/runs"),
    ("POST", "/gradio_api/vibe-edit"),
    ("GET", "/gradio_api/proxy=http://127.0.0.1/"),
    ("POST", "/gradio_api/stream/x"),
    ("POST", "/admin/gradio_api/process_recording"),
    ("GET", "/admin/monitoring/summary"),
]


@pytest.mark.parametrize(("method", "path"), CLOSED)
def test_routes_the_pages_do_not_use_are_closed(app, method: str, path: str):
    url, _, _ = app
    with login(url, "admin") as admin:
        answer = admin.request(method, path, files={"files": ("a.wav", b"RIFF" + b"0" * 4096)})
        assert answer.status_code == 403, (path, answer.text[:200])


def test_every_answer_forbids_framing_and_keeps_the_referrer_home(app):
    url, _, _ = app
    with login(url, "ann-1") as ann:
        for answer in (httpx.get(f"{url}/login"), ann.get("/", headers={"Accept": "text/html"}),
                       ann.get("/config"), ann.get("/nothing-here")):  # fmt: skip
            assert answer.headers["x-frame-options"] == "DENY", answer.url
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["referrer-policy"] == "same-origin"


def test_unexpected_errors_reach_users_as_words_of_the_app_not_internals(app):
    url, _, _ = app
    with login(url, "ann-1") as ann:
        event = ann.post("/gradio_api/call/skip", json={"data": [["a", "list"]]}).json()
        answer = ann.get(f"/gradio_api/call/skip/{event['event_id']}").text
        assert "event: error" in answer
        assert "binding" not in answer.lower() and "sqlite" not in answer.lower(), answer
