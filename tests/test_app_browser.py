"""The annotation app in a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright, against `rewardlab serve` on localhost. The project requires candidate clips to be
played to the end, and every response and transcript is real espeak-ng speech."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from app_harness import APP_WORLD, PASSWORDS, TEMPLATE_TEXT, XSS_TEXT, make_app_project, running_app
from gradio_client import Client

from rewardlab.store import Store

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect  # retries until the page reaches the state: no race with rendering
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (make test installs it)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory, demo_world) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    project = make_app_project(
        root, demo_world(**APP_WORLD), annotators_per_task=4, require_full_listen=True
    )
    with running_app(project, root / "server.log") as url:
        yield url, project


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    yield context
    context.close()


def log_in(page, url: str, name: str, start: str = "/") -> None:
    page.goto(url + start)
    assert "/login" in page.url  # no session: sent to the login page
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")


def shown_task(page) -> dict:
    page.wait_for_selector("#rl-task-meta", state="attached", timeout=30_000)
    return page.evaluate("() => JSON.parse(document.querySelector('#rl-task-meta').dataset.meta)")


def is_queue_join(request) -> bool:
    """A request that sends one Gradio event (a submit, an autosave, ...) to the server."""
    path = urlsplit(request.url).path
    return request.method == "POST" and path.endswith("/gradio_api/queue/join")


def wait_for_task(page, task_id: str) -> dict:
    page.wait_for_function(
        "id => { const m = document.querySelector('#rl-task-meta');"
        " return m && JSON.parse(m.dataset.meta).taskId === id; }",
        arg=task_id,
        timeout=30_000,
    )
    return shown_task(page)


def play_to_end(page, clip: str) -> None:
    """Press play on the clip's player and wait for it to end (at double speed)."""
    page.evaluate(
        """clip => new Promise((done, fail) => {
            const audio = document.querySelector(`audio[data-clip="${clip}"]`);
            audio.addEventListener('ended', done, {once: true});
            audio.addEventListener('error', () => fail(audio.error), {once: true});
            audio.playbackRate = 2;
            audio.play().catch(fail);
        })""",
        clip,
    )


def focus_page(page) -> None:
    page.locator("#rl-header").click()


def test_annotate_with_the_keyboard_submit_reload_and_find_it_stored(app, context, tmp_path):
    url, project = app
    page = context.new_page()
    log_in(page, url, "ann-1")
    task = wait_for_task(page, "spoken-t")
    expect(page.locator("#rl-progress")).to_have_text("0 of 40 today")
    page.get_by_text("Guidelines and keyboard shortcuts").click()  # one click away
    expect(page.get_by_text("choose a level (left to right)")).to_be_visible()

    focus_page(page)
    page.keyboard.press("3")  # "Response 1 slightly better"
    labels = page.locator("#rl-level label")
    assert labels.count() == 7 and "Response 1 slightly better" in labels.nth(2).inner_text()
    expect(page.locator("#rl-level input").nth(2)).to_be_checked()
    page.keyboard.press("Enter")  # refused: the responses were not listened to
    page.get_by_text("to the end before submitting").first.wait_for(timeout=15_000)

    history_clip = page.locator(".rl-timeline audio").first.get_attribute("data-clip")
    for clip in [history_clip, *task["candidateClips"]]:
        play_to_end(page, clip)
    badges = page.locator(".rl-response .rl-listened")
    expect(badges).to_have_text(["played to the end", "played to the end"])
    page.locator(
        "#rl-rubric input[data-response=response_1][data-criterion=pacing][value='4']"
    ).check()
    page.fill("#rl-rationale textarea", "Response 1 sounds calmer.")
    focus_page(page)
    page.keyboard.press("Enter")
    wait_for_task(page, "xss-t")
    expect(page.locator("#rl-progress")).to_have_text("1 of 40 today")

    page.reload()
    assert shown_task(page)["taskId"] == "xss-t"  # the open task resumes
    expect(page.locator("#rl-progress")).to_have_text("1 of 40 today")
    page.screenshot(path=tmp_path / "annotated.png", full_page=True)
    assert (tmp_path / "annotated.png").stat().st_size > 20_000

    with Store(project) as store:
        (judgment,) = store.judgments(annotator_id="ann-1")
    assert judgment.task_id == "spoken-t" and judgment.id == task["judgmentId"]
    assert judgment.shown_level == 1  # the annotator picked Response 1, slightly better
    assert judgment.rationale == "Response 1 sounds calmer."
    assert all(judgment.listened[clip] >= 0.98 for clip in task["candidateClips"])
    assert judgment.listened[history_clip] >= 0.98
    first = "policy" if judgment.shown_order == "policy_first" else "reference"
    assert judgment.rubric_scores == {first: {"pacing": 4}}


def test_a_draft_survives_a_reload_and_a_dropped_connection(app, context):
    url, project = app
    page = context.new_page()
    log_in(page, url, "ann-2")
    task = wait_for_task(page, "spoken-t")
    page.fill("#rl-rationale textarea", "first thoughts")
    focus_page(page)
    page.keyboard.press("5")
    page.reload()  # at once: before the autosave reached the server
    wait_for_task(page, "spoken-t")
    page.wait_for_function(
        "() => document.querySelector('#rl-rationale textarea').value === 'first thoughts'"
    )
    expect(page.locator("#rl-level input").nth(4)).to_be_checked()

    context.set_offline(True)
    with page.expect_event("requestfailed", predicate=is_queue_join, timeout=15_000):
        page.locator("#rl-rationale textarea").press_sequentially(", typed offline")
    # the autosave failed while offline: the browser's copy holds the text, not yet synced
    local = page.evaluate(
        "id => JSON.parse(localStorage.getItem(`rewardlab:draft:${id}`))", task["judgmentId"]
    )
    assert (local["draft"]["rationale"], local["synced"]) == (
        "first thoughts, typed offline",
        False,
    )
    context.set_offline(False)
    page.reload()
    wait_for_task(page, "spoken-t")
    page.wait_for_function(
        "() => document.querySelector('#rl-rationale textarea').value"
        " === 'first thoughts, typed offline'"
    )
    page.get_by_text("Draft saved at").wait_for(timeout=15_000)  # and now the server has it
    with Store(project) as store:
        (draft,) = store.query(
            "SELECT draft FROM assignments WHERE annotator_id = 'ann-2' AND task_id = 'spoken-t'"
        )[0]
    assert '"rationale": "first thoughts, typed offline"' in draft and '"level": -1' in draft
    assert task["judgmentId"] == shown_task(page)["judgmentId"]


def test_a_double_click_submits_once(app, context):
    url, project = app
    page = context.new_page()
    log_in(page, url, "ann-3")
    task = wait_for_task(page, "spoken-t")
    for clip in task["candidateClips"]:
        play_to_end(page, clip)
    page.locator("#rl-level label").nth(3).click()  # about the same
    submits = []  # every event the page sends that carries this judgment id is a submit
    page.on(
        "request",
        lambda r: (
            submits.append(r)
            if is_queue_join(r) and task["judgmentId"] in (r.post_data or "")
            else None
        ),
    )
    page.locator("#rl-submit").dblclick()
    wait_for_task(page, "xss-t")  # the first submit answered: a second would have been sent
    assert len(submits) == 1
    with Store(project) as store:
        assert [j.task_id for j in store.judgments(annotator_id="ann-3")] == ["spoken-t"]
    expect(page.locator("#rl-progress")).to_have_text("1 of 40 today")


def test_html_in_the_data_and_in_a_rationale_is_shown_as_text(app, browser, context):
    url, project = app
    page = context.new_page()
    log_in(page, url, "ann-4")
    wait_for_task(page, "spoken-t")
    page.locator("#rl-skip").click()
    wait_for_task(page, "xss-t")
    assert XSS_TEXT in page.inner_text("#rl-timeline")
    responses = page.inner_text("#rl-response-1") + page.inner_text("#rl-response-2")
    assert TEMPLATE_TEXT in responses and XSS_TEXT in responses
    page.locator("#rl-level label").nth(0).click()
    page.fill("#rl-rationale textarea", XSS_TEXT)
    page.locator("#rl-submit").click()
    page.wait_for_function(
        "() => !document.querySelector('#rl-task-meta') || "
        "JSON.parse(document.querySelector('#rl-task-meta').dataset.meta)"
        ".taskId !== 'xss-t'",
        timeout=30_000,
    )
    assert page.evaluate("window.__xss") is None
    with Store(project) as store:
        assert store.judgments(annotator_id="ann-4")[0].rationale == XSS_TEXT

    admin_context = browser.new_context()
    admin = admin_context.new_page()
    log_in(admin, url, "admin", start="/admin/")
    admin.wait_for_selector("#rl-recent", timeout=30_000)
    shown = admin.locator("#rl-recent").get_by_text(XSS_TEXT).first
    shown.wait_for(state="attached", timeout=30_000)  # the text itself, in a table cell
    assert admin.locator("#rl-recent img, #rl-recent script").count() == 0
    assert admin.evaluate("window.__xss") is None
    admin_context.close()


def test_an_admin_manages_accounts_settings_gold_rubrics_flags_and_imports(
    app, browser, context, tmp_path
):
    url, project = app
    ann = Client(url, auth=("ann-4", PASSWORDS["ann-4"]), verbose=False, analytics_enabled=False)
    held = ann.predict(api_name="/next_task")["task_id"]
    ann.predict(held, "the clip is silent", api_name="/flag")  # ann-4 flags the task it holds
    guesser = httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address="127.0.0.7"))
    for _ in range(6):  # past the free failures: this address now waits to try ann-2 again
        assert guesser.post("/login", data={"username": "ann-2", "password": "x"}).is_error
    page = context.new_page()
    log_in(page, url, "admin", start="/admin/")
    page.get_by_text("the clip is silent").first.wait_for(state="attached", timeout=30_000)
    page.locator("#rl-flagged-task").get_by_role("textbox").fill(held)
    page.get_by_role("button", name="Return to the queue").click()
    page.wait_for_function(
        "() => !document.querySelector('#rl-flags').innerText.includes('the clip is silent')"
    )

    page.get_by_role("tab", name="Annotators").click()
    page.get_by_label("Annotator id (their login)").fill("ann-new")
    page.get_by_label("Display name").fill("New <b>Person</b>")
    page.get_by_label("Password (8+ characters)").fill("fresh-password")
    page.get_by_role("button", name="Create account").click()
    page.get_by_text("Created 'ann-new'.").wait_for(timeout=30_000)
    page.locator("#rl-who").get_by_role("textbox").fill("ann-3")
    page.get_by_role("button", name="Deactivate").click()
    page.get_by_text("'ann-3' is deactivated").wait_for(timeout=30_000)
    expect(page.locator("#rl-login-delays")).to_contain_text("127.0.0.7")
    page.locator("#rl-delay-who").get_by_role("textbox").fill("127.0.0.7")
    page.get_by_role("button", name="Clear login delays").click()
    page.get_by_text("Cleared 2 failure count(s).").wait_for(timeout=30_000)
    right = {"username": "ann-2", "password": PASSWORDS["ann-2"]}
    assert guesser.post("/login", data=right).status_code == 200  # at once: the delay is gone
    guesser.close()

    page.get_by_role("tab", name="Project").click()
    goal = page.get_by_label("Daily goal per annotator")
    expect(goal).to_have_value("40")  # the page has loaded the stored settings: edit after that
    goal.fill("12")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved").wait_for(timeout=30_000)
    page.locator("#rl-gold-task").get_by_role("textbox").fill("xss-t")
    page.get_by_label("Known answer (policy vs reference)").click()
    page.get_by_role("option", name="+2 better").click()
    page.get_by_role("button", name="Set", exact=True).click()
    page.get_by_text("Task 'xss-t' is a gold item at +2.").wait_for(timeout=30_000)
    page.get_by_label("Rubric", exact=True).click()
    page.get_by_role("option", name="overall_preference").click()
    page.get_by_label("all unjudged tasks", exact=True).check()
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("tasks now use overall_preference").wait_for(timeout=30_000)

    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr(
            "dialogues.jsonl", json.dumps({"id": "up-d", "turns": [{"role": "user", "text": "Hi"}]})
        )
        out.writestr(
            "tasks.jsonl",
            json.dumps(
                {
                    "id": "up-t",
                    "dialogue_id": "up-d",
                    "turn_index": 0,
                    "policy": {"text": "Hello there!", "source": "p"},
                    "reference": {"text": "Hi.", "source": "reference"},
                }
            ),
        )
    page.get_by_role("tab", name="Import").click()
    page.locator("#rl-import-files input[type=file]").set_input_files(archive)
    page.get_by_label("Dry run: only check").uncheck()
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('textarea'))"
        ".some(t => t.value.startsWith('imported 1 dialogues, 1 tasks'))",
        timeout=30_000,
    )
    page.screenshot(path=tmp_path / "admin.png", full_page=True)

    assert (
        httpx.post(
            f"{url}/login", data={"username": "ann-new", "password": "fresh-password"}
        ).status_code
        == 200
    )
    assert (
        httpx.post(
            f"{url}/login", data={"username": "ann-3", "password": PASSWORDS["ann-3"]}
        ).status_code
        == 401
    )
    with Store(project) as store:
        assert store.settings.daily_goal == 12
        assert (store.task("xss-t").gold, store.task("xss-t").gold_level) == (True, 2)
        assert store.task("up-t").dialogue_id == "up-d"
        assert store.task("demo-t00005").rubric_id == "overall_preference"  # nobody judged it
        assert [a["display_name"] for a in store.annotators() if a["id"] == "ann-new"] == [
            "New <b>Person</b>"
        ]
        assert store.query(
            "SELECT status FROM assignments WHERE task_id = ? AND annotator_id = 'ann-4'", (held,)
        ) == [("skipped",)]


@pytest.fixture(scope="module")
def other_site(tmp_path_factory, app):
    """Pages of another origin (another port of this host) aimed at the app, served by a
    plain HTTP server: one submits a login form with its author's credentials, one sends the
    browser to /logout, one submits a logout form."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from processes import free_port

    url, _ = app
    root = tmp_path_factory.mktemp("other-site")
    submit = "<script>document.forms[0].submit()</script>"
    (root / "login.html").write_text(
        f'<form method="post" action="{url}/login"><input name="username" value="ann-2">'
        f'<input name="password" value="{PASSWORDS["ann-2"]}"></form>{submit}'
    )
    (root / "logout-link.html").write_text(f'<script>location = "{url}/logout"</script>')
    (root / "logout-form.html").write_text(
        f'<form method="post" action="{url}/logout"></form>{submit}'
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_another_sites_page_can_neither_log_you_in_nor_out(app, context, other_site):
    url, _ = app
    page = context.new_page()
    session = "rewardlab_session_"

    def logged_in() -> bool:
        return context.request.get(f"{url}/gradio_api/info").status == 200

    with page.expect_response(f"{url}/login") as login_csrf:
        page.goto(f"{other_site}/login.html")
    assert login_csrf.value.status == 403
    assert not [c for c in context.cookies() if c["name"].startswith(session)]
    assert not logged_in()

    log_in(page, url, "ann-1")
    shown_task(page)
    assert logged_in()
    page.goto(f"{other_site}/logout-link.html")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()  # only the button
    assert logged_in()
    with page.expect_response(f"{url}/logout") as logout_csrf:
        page.goto(f"{other_site}/logout-form.html")
    assert logout_csrf.value.status == 403
    assert logged_in()
    assert [c for c in context.cookies() if c["name"].startswith(session)]

    page.goto(url)  # the page's own link, then its button, do log out
    shown_task(page)
    page.get_by_role("link", name="Log out").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login**")
    assert not logged_in()
