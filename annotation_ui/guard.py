"""What the session gate enforces besides "logged in": the pieces, each testable alone.

- `LoginThrottle`: failed logins slow down the (address, name) and the address that made them,
  by a delay that doubles with each failure past a free allowance. Nothing is ever locked: the
  right password from another address is never refused, and one address spraying passwords
  over many names is slowed as a whole.
- `cross_site`: a state-changing request that a page of another origin made the browser send
  (login and logout CSRF, and every Gradio POST). Browsers say so in ``Sec-Fetch-Site`` or, for
  older ones, in ``Origin``; a client that sends neither is no browser and carries no
  victim's cookie.
- `allowed_route`: the routes the two pages and their API use; every other Gradio route
  (uploads for annotators, ``process_recording``, ``monitoring``, ``reset``, ``run-history``,
  ...) is closed.
- `QueueOwners`: Gradio keys its result streams by a session hash or an event id that the
  browser picks or is told; each is tied to the account that first used it, so another
  account presenting it gets nothing.
- `SECURITY_HEADERS` on every answer; CORS only for origins the operator names.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import Scope

MEMORY_ENTRIES = 10_000
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class ThrottleSettings:
    """Failed logins allowed before any delay, and how the delay grows (`rewardlab serve`)."""

    free_failures: int = 5  # per (address, name)
    address_free_failures: int = 20  # per address, over all names (password spraying)
    first_delay_s: float = 1.0  # after the allowance; doubles with each further failure
    max_delay_s: float = 300.0
    forget_after_s: float = 3600.0  # a key without a failure for this long starts over

    def __post_init__(self) -> None:
        if min(self.free_failures, self.address_free_failures) < 1:
            raise ValueError("the free failures allowed must be at least 1")
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")

    def delay_s(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** min(failures - free, 62))


class LoginThrottle:
    """Failure counts per (address, name) and per address; see the module docstring."""

    def __init__(self, settings: ThrottleSettings | None = None, clock=time.monotonic):
        self.settings = settings or ThrottleSettings()
        self._clock = clock
        # key -> (failures, time of the last one); keys: ("pair", address, name), ("address", a)
        self._failures: OrderedDict[tuple[str, ...], tuple[int, float]] = OrderedDict()

    def _free(self, key: tuple[str, ...]) -> int:
        s = self.settings
        return s.free_failures if key[0] == "pair" else s.address_free_failures

    def _keys(self, address: str, name: str) -> list[tuple[tuple[str, ...], int]]:
        keys = [("pair", address, name), ("address", address)]
        return [(key, self._free(key)) for key in keys]

    def _live(self, key: tuple[str, ...]) -> tuple[int, float]:
        failures, last = self._failures.get(key, (0, 0.0))
        if failures and self._clock() - last > self.settings.forget_after_s:
            del self._failures[key]
            return 0, 0.0
        return failures, last

    def wait_s(self, address: str, name: str) -> float:
        """Seconds before `address` may try `name` again (0: now)."""
        now, wait = self._clock(), 0.0
        for key, free in self._keys(address, name):
            failures, last = self._live(key)
            wait = max(wait, last + self.settings.delay_s(failures, free) - now)
        return max(wait, 0.0)

    def failed(self, address: str, name: str) -> None:
        now = self._clock()
        for key, _ in self._keys(address, name):
            failures, _ = self._live(key)
            self._failures[key] = (failures + 1, now)
            self._failures.move_to_end(key)
        while len(self._failures) > MEMORY_ENTRIES:  # made-up names cannot fill the memory
            self._failures.popitem(last=False)

    def succeeded(self, address: str, name: str) -> None:
        """A right password clears its (address, name); the address keeps its count, so one
        known password does not reset a spray."""
        self._failures.pop(("pair", address, name), None)

    def clear(self, who: str | None = None) -> int:
        """Forget the failures of a name or an address (None: all); returns keys dropped."""
        keys = [k for k in self._failures if who is None or who in k[1:]]
        for key in keys:
            del self._failures[key]
        return len(keys)

    def describe(self) -> list[dict]:
        """The keys now delayed or counting, for the admin page."""
        out = []
        for key in list(self._failures):
            failures, last = self._live(key)
            if not failures:
                continue
            wait = last + self.settings.delay_s(failures, self._free(key)) - self._clock()
            out.append({
                "address": key[1], "name": key[2] if key[0] == "pair" else "(any)",
                "failures": failures, "wait_s": max(0, math.ceil(wait)),
            })  # fmt: skip
        return out


def own_origin(scope: Scope) -> str:
    return Headers(scope=scope).get("host", "")


def cross_site(scope: Scope) -> bool:
    """True for a state-changing browser request started by a page of another origin (another
    port of the same host included): those carry the victim's cookies without their intent."""
    if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
        return False
    headers = Headers(scope=scope)
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")  # "none": typed by the user
    origin = headers.get("origin")
    if origin is None:
        return False  # no browser's cross-origin request leaves it out
    return origin == "null" or urlsplit(origin).netloc != own_origin(scope)


# The routes each Gradio page uses (its page, config, assets, queue and the API's info), found
# by recording what Chromium and gradio_client ask for; relative to the page's mount point.
PAGE_ROUTES = {
    "/",
    "/config",
    "/theme.css",
    "/favicon.ico",
    "/manifest.json",
    "/gradio_api/info",
    "/gradio_api/queue/join",
    "/gradio_api/queue/data",
    "/gradio_api/cancel",
    "/gradio_api/startup-events",
}
PAGE_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/heartbeat/", "/gradio_api/call/")
# the admin page also uploads import files and offers files for download
ADMIN_ROUTES = {"/gradio_api/upload", "/gradio_api/upload_progress"}
ADMIN_PREFIXES = ("/gradio_api/file=",)
# rewardlab's own routes (annotation_ui.web)
OWN_ROUTES = {"/login", "/login/", "/logout", "/admin"}
OWN_PREFIXES = ("/media/", "/admin/export/")


def allowed_route(path: str) -> bool:
    """Whether `path` (slashes collapsed) is one of the routes the app serves."""
    if path in OWN_ROUTES or path.startswith(OWN_PREFIXES):
        return True
    admin = path.startswith("/admin/")
    inner = path[len("/admin") :] if admin else path
    if inner in PAGE_ROUTES or inner.startswith(PAGE_PREFIXES):
        return True
    return admin and (inner in ADMIN_ROUTES or inner.startswith(ADMIN_PREFIXES))


class QueueOwners:
    """Session hashes and event ids of Gradio's queue, each owned by the first account that
    used it. Each account keeps at most `per_account` (its oldest are forgotten first), so
    nobody can push another account's keys out of memory."""

    def __init__(self, per_account: int = 2000):
        self.per_account = per_account
        self._owner: dict[str, str] = {}
        self._held: dict[str, OrderedDict[str, None]] = {}

    def claim(self, key: str, account_id: str) -> bool:
        """True when `key` is (now) `account_id`'s; False when another account holds it."""
        owner = self._owner.get(key)
        if owner is not None:
            return owner == account_id
        held = self._held.setdefault(account_id, OrderedDict())
        held[key] = None
        self._owner[key] = account_id
        while len(held) > self.per_account:
            stale, _ = held.popitem(last=False)
            del self._owner[stale]
        return True
