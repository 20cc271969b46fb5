"""Security of the running app over real HTTP: sessions on every route (Gradio's own too),
admins only under /admin, media confined to its root, the login's cookie and throttle."""

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

from annotation_ui.web import LOGIN_FAILURES_ALLOWED
from rewardlab.store import Store


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
    with running_app(project, root / "server.log") as url:
        yield url, project, clip


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
        assert browser.get("/logout").status_code == 303
    with httpx.Client(base_url=url, cookies=response.cookies) as stale:
        assert stale.get("/gradio_api/info").status_code == 401  # the session is gone
    wrong = httpx.post(
        f"{url}/login",
        data={"username": "ann-2", "password": "nope"},
        headers={"Accept": "text/html"},
    )
    assert wrong.status_code == 401 and "Wrong annotator id or password" in wrong.text


def test_repeated_failures_lock_the_name_out(app):
    url, _, _ = app
    for _ in range(LOGIN_FAILURES_ALLOWED):
        bad = httpx.post(f"{url}/login", data={"username": "ann-4", "password": "guess-guess"})
        assert bad.status_code == 401
    right = {"username": "ann-4", "password": PASSWORDS["ann-4"]}
    assert httpx.post(f"{url}/login", data=right).status_code == 401
    other = {"username": "ann-3", "password": PASSWORDS["ann-3"]}
    assert httpx.post(f"{url}/login", data=other).status_code == 200
