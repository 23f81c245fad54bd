"""Headless Chromium for browser tests: the system's ``chromium`` driven by Playwright.

Playwright's own browser builds are never downloaded (no ``playwright install``): the tests launch
the executable Debian's ``chromium`` package installs, through the Node driver the ``playwright``
wheel carries, so nothing here needs the network.

Fixtures (made available to every test package by ``tests/conftest.py``):

- ``chromium``: a headless browser, one per test module; the test is skipped when no chromium
  executable is installed.
- ``browser_page``: a fresh context and page whose requests are recorded in a :class:`RequestLog`;
  requests to any host but the loopback are refused before they leave. When the test fails, a
  screenshot of the page is kept in the test's ``tmp_path`` and named in the failure report.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, Route

#: Where Debian's ``chromium`` package puts its launcher, should it not be on ``PATH``.
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")

#: Flags beyond Playwright's own defaults (which already turn off background networking, component
#: updates, sync and first-run tasks): no GPU, no QUIC, no reliance on a small ``/dev/shm``.
CHROMIUM_ARGS = ("--disable-gpu", "--disable-quic", "--disable-dev-shm-usage")

#: How long (ms) actions and ``expect`` assertions wait for the page.
WAIT_MS = 30_000

#: URL schemes whose requests never leave the browser.
LOCAL_SCHEMES = frozenset({"about", "blob", "data"})


def chromium_executable() -> str | None:
    """The system's Chromium executable, or ``None`` when none is installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else None


def launch_chromium(playwright: Playwright, executable: str, **options: Any) -> Browser:
    """Launch ``executable`` headless through ``playwright``.

    Chromium's sandbox cannot run as root, so it is turned off there (``--no-sandbox``) and kept
    for other users. ``options`` are passed to ``BrowserType.launch``.
    """
    return playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        chromium_sandbox=os.geteuid() != 0,
        args=list(CHROMIUM_ARGS),
        **options,
    )


def is_loopback_url(url: str) -> bool:
    """True if a request to ``url`` stays on this machine (a loopback host, or ``data:`` and the like)."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    host = parts.hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RequestLog:
    """Every request a browser context issued, in order."""

    requests: list[Request] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.requests.append(request)

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]

    def remote(self) -> list[str]:
        """The URLs of requests meant for a host other than this machine's loopback."""
        return [url for url in self.urls() if not is_loopback_url(url)]

    def matching(self, method: str, path: str) -> list[Request]:
        """The requests with this method whose URL path is ``path``."""
        return [
            request
            for request in self.requests
            if request.method == method and urlsplit(request.url).path == path
        ]


@dataclass
class BrowserPage:
    """A page of its own context, and the requests of that context."""

    page: Page
    context: BrowserContext
    requests: RequestLog
    #: Where a screenshot goes when the test fails (``None``: none is taken).
    screenshot: Path | None = None


def _refuse_remote(route: Route) -> None:
    if is_loopback_url(route.request.url):
        route.continue_()
    else:
        route.abort("blockedbyclient")


def open_page(browser: Browser, screenshot: Path | None = None) -> BrowserPage:
    """A new context and page that record every request and refuse those to other hosts."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    log = RequestLog()
    context.on("request", log.record)
    context.route("**/*", _refuse_remote)
    return BrowserPage(context.new_page(), context, log, screenshot)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the tests of one module (skipped when none is installed)."""
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no chromium executable installed (Debian: apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # Actions and assertions wait up to this long for the page (the default 5 s is short for a
    # shared, loaded machine); none of them asserts how long it took.
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Browser, tmp_path: Path) -> Iterator[BrowserPage]:
    """A fresh page; a screenshot of it is kept in ``tmp_path`` when the test fails."""
    opened = open_page(chromium, screenshot=tmp_path / "failure.png")
    try:
        yield opened
    finally:
        opened.context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test that uses ``browser_page`` fails, screenshot the page and name the file in the report."""
    report = yield
    opened = getattr(item, "funcargs", {}).get("browser_page")
    if report.when == "call" and report.failed and isinstance(opened, BrowserPage) and opened.screenshot:
        try:
            opened.page.screenshot(path=str(opened.screenshot), full_page=True)
            report.sections.append(("browser", f"screenshot of the page: {opened.screenshot}"))
        except Exception as exc:  # the page may be gone; the test's own failure matters more
            report.sections.append(("browser", f"no screenshot: {exc}"))
    return report
