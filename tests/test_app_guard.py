"""The session gate's rules alone: the login throttle's arithmetic on a hand-driven clock, the
cross-site test on the headers browsers send, the route allow-list, queue ownership."""

from __future__ import annotations

import pytest

from annotation_ui.guard import (
    MEMORY_ENTRIES,
    LoginThrottle,
    QueueOwners,
    ThrottleSettings,
    allowed_route,
    cross_site,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_delay_doubles_past_the_allowance_and_caps():
    clock = Clock()
    settings = ThrottleSettings(free_failures=3, first_delay_s=2, max_delay_s=10)
    throttle = LoginThrottle(settings, clock=clock)
    waits = []
    for _ in range(7):
        throttle.failed("10.0.0.1", "ann")
        waits.append(throttle.wait_s("10.0.0.1", "ann"))
        clock.now += waits[-1]  # the client waits exactly as long as told
    assert waits == [0, 0, 2, 4, 8, 10, 10]
    assert throttle.wait_s("10.0.0.2", "ann") == 0  # another address: nothing to wait for
    assert throttle.wait_s("10.0.0.1", "other") == 0  # another name: the address is under 20


def test_the_address_count_catches_spraying_and_a_success_does_not_reset_it():
    clock = Clock()
    throttle = LoginThrottle(ThrottleSettings(address_free_failures=4), clock=clock)
    for i in range(4):
        throttle.failed("10.0.0.9", f"name-{i}")
    assert throttle.wait_s("10.0.0.9", "fresh-name") == 1.0
    throttle.succeeded("10.0.0.9", "name-0")
    assert throttle.wait_s("10.0.0.9", "fresh-name") == 1.0


def test_counts_are_forgotten_cleared_by_an_admin_and_bounded():
    clock = Clock()
    throttle = LoginThrottle(ThrottleSettings(free_failures=1, forget_after_s=60), clock=clock)
    throttle.failed("10.0.0.1", "ann")
    assert throttle.wait_s("10.0.0.1", "ann") == 1.0
    clock.now += 61
    assert throttle.wait_s("10.0.0.1", "ann") == 0 and throttle.describe() == []
    throttle.failed("10.0.0.1", "ann")
    throttle.failed("10.0.0.2", "bob")
    assert {row["name"] for row in throttle.describe()} == {"ann", "bob", "(any)"}
    assert throttle.clear("ann") == 1  # the (address, name) key; the address keeps its count
    assert throttle.clear("10.0.0.2") == 2
    assert throttle.clear() == 1
    for i in range(MEMORY_ENTRIES):
        throttle.failed(f"10.1.{i // 250}.{i % 250}", "x")
    assert len(throttle.describe()) <= MEMORY_ENTRIES


def test_settings_are_checked():
    with pytest.raises(ValueError, match="at least 1"):
        ThrottleSettings(free_failures=0)
    with pytest.raises(ValueError, match="first_delay_s"):
        ThrottleSettings(first_delay_s=10, max_delay_s=5)


def scope(method: str, **headers: str) -> dict:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"host", b"127.0.0.1:7860"))
    return {"type": "http", "method": method, "headers": raw}


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("POST", {"sec_fetch_site": "cross-site"}, True),
        ("POST", {"sec_fetch_site": "same-site"}, True),  # another port of this host
        ("POST", {"sec_fetch_site": "same-origin"}, False),
        ("POST", {"sec_fetch_site": "none"}, False),  # typed or bookmarked by the user
        ("POST", {"origin": "http://127.0.0.1:9999"}, True),
        ("POST", {"origin": "null"}, True),  # a sandboxed frame or a data: page
        ("POST", {"origin": "http://127.0.0.1:7860"}, False),
        ("POST", {}, False),  # no browser: curl, gradio_client (and no victim's cookie)
        ("GET", {"sec_fetch_site": "cross-site"}, False),  # a link; GETs change nothing
    ],
)
def test_cross_site_is_what_browsers_say_it_is(method, headers, refused):
    assert cross_site(scope(method, **headers)) is refused


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", True),
        ("/config", True),
        ("/gradio_api/queue/join", True),
        ("/gradio_api/heartbeat/abc", True),
        ("/assets/index-1.js", True),
        ("/media/tts/a.flac", True),
        ("/admin/", True),
        ("/admin/gradio_api/upload", True),  # the admin's import form
        ("/gradio_api/upload", False),
        ("/gradio_api/file=/etc/passwd", False),
        ("/gradio_api/process_recording", False),
        ("/monitoring/summary", False),
        ("/gradio_api/reset", False),
        ("/admin/gradio_api/process_recording", False),
        ("/admin/monitoring", False),
    ],
)
def test_only_the_routes_the_pages_use_are_served(path, allowed):
    assert allowed_route(path) is allowed


def test_a_queue_key_belongs_to_its_first_account_and_each_keeps_a_bounded_few():
    owners = QueueOwners(per_account=3)
    assert owners.claim("session:a", "ann-1") and owners.claim("session:a", "ann-1")
    assert not owners.claim("session:a", "ann-2")
    for i in range(5):
        owners.claim(f"session:flood-{i}", "ann-2")
    assert not owners.claim("session:a", "ann-2")  # ann-2's flood pushed out only its own
    assert owners.claim("session:flood-0", "ann-3")  # forgotten: free again
