"""The stock NRP frontend in a real browser against a real ``nrp up`` (the flow of its README).

The build (``../shared/nrp-frontend/build`` beside the repository) has ``localhost:9000`` baked in;
the test serves a copy from a temporary folder with those URLs rewritten to the port ``nrp up``
bound (port 0, read from its output), so nothing assumes 9000 is free. Playwright drives Debian's
``chromium``. Every step leaves a screenshot and the browser log (console, failed requests, and each
change of what the page's experiment list says is joinable, all with times); when a step fails they
are copied to ``<tmp>/nrp-frontend-browser-failures/<time>/`` and that path is in the failure message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cli.test_up import UpProcess
from tests.helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO.parent / "shared" / "nrp-frontend" / "build"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
STEP_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.timeout(600)


def _skip_reason() -> str | None:
    """Why the test cannot run here: only an absent build is a reason to skip."""
    if not (BUILD / "index.html").is_file():
        where = BUILD.relative_to(REPO.parent)
        return f"the NRP frontend build is absent (expected {where} beside the repository)"
    return None


def _missing_tools() -> str | None:
    """What is missing to drive a browser (a failure, not a skip: make test installs both)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return "Debian's chromium is not installed (apt-get install -y chromium)"
    return None


def _copy_build(target: Path) -> Path:
    shutil.copytree(BUILD, target, ignore=shutil.ignore_patterns("*.map"))
    return target


def _point_build_at(build: Path, port: int) -> None:
    """Rewrite the baked-in ``localhost:9000`` (proxy URL, MQTT port) to ``port``, in place."""
    for path in (build / "static" / "js").glob("*.js"):
        text = path.read_text(encoding="utf-8")
        changed = text.replace("localhost:9000", f"localhost:{port}").replace(
            '"port":"9000"', f'"port":"{port}"'
        )
        if changed != text:
            path.write_text(changed, encoding="utf-8")


class Browser:
    """One Chromium page with its console and failed requests recorded, screenshots on demand."""

    def __init__(self, playwright: Any, shots: Path) -> None:
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.set_default_timeout(STEP_TIMEOUT_MS)
        self.shots = shots
        self.log: list[str] = []
        self.step = 0
        self.started = time.monotonic()
        self.joinable: dict[str, list[str]] | None = None
        self.page.on("console", lambda msg: self.note(f"console.{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda exc: self.note(f"pageerror: {exc}"))
        self.page.on("response", self._on_response)

    def note(self, text: str) -> None:
        """One line of the browser log, with the seconds since the browser started."""
        self.log.append(f"[{time.monotonic() - self.started:7.2f}] {text}")

    def _on_response(self, response: Any) -> None:
        """Failed requests, and each change of what the page's experiment list says is joinable."""
        request = response.request
        if response.status >= 400:
            self.note(f"HTTP {response.status} {request.method} {response.url}")
        elif request.method == "GET" and response.url.split("?")[0].endswith("/proxy/storage/experiments"):
            try:
                listed = response.json()
                joinable = {
                    item["id"]: [j["server"] for j in item["joinableServers"]]
                    for item in listed
                    if item.get("joinableServers")
                }
            except Exception as exc:  # noqa: BLE001 - a diagnostic line must not fail the test
                self.note(f"experiment list unreadable: {exc}")
                return
            if joinable != self.joinable:
                self.joinable = joinable
                self.note(f"the page's experiment list has joinable simulations: {joinable}")

    def snapshot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        self.note(f"step {path.name}")
        try:
            self.page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the real failure
            self.note(f"screenshot {name} failed: {exc}")
        (self.shots / "browser.log").write_text("\n".join(self.log), encoding="utf-8")
        return path

    def check_healthy(self, name: str) -> None:
        """No error dialog and no blank page at this step."""
        page = self.page
        dialogs = page.locator(".error-dialog-wrapper")
        if dialogs.count() and dialogs.first.is_visible():
            raise AssertionError(f"{name}: error dialog: {dialogs.first.inner_text()[:500]}")
        body = page.locator("body").inner_text().strip()
        assert body, f"{name}: blank page"
        self.snapshot(name)

    def close(self) -> None:
        self.browser.close()


@pytest.fixture
def browser_run(tmp_path: Path) -> Iterator[tuple[UpProcess, Browser, dict[str, str]]]:
    """``nrp up --frontend`` on free ports, a browser, and ``nrp up``'s lines plus ``data_dir``."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    missing = _missing_tools()
    if missing:
        pytest.fail(missing)
    from playwright.sync_api import sync_playwright

    build = _copy_build(tmp_path / "frontend-build")
    up = UpProcess(tmp_path / "data", "--frontend", str(build))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        info = {**up.wait_ready(), "data_dir": str(tmp_path / "data")}
        port = int(info["Storage"].rsplit(":", 1)[1])
        _point_build_at(build, port)
        with sync_playwright() as playwright:
            browser = Browser(playwright, shots)
            try:
                yield up, browser, info
            finally:
                browser.close()
    finally:
        up.kill()


def _line(up: UpProcess, heading: str) -> str:
    return next(line[len(heading) :] for line in up.lines if line.startswith(heading))


def _wait(check: Any, what: str, timeout: float = 60.0) -> Any:
    return wait_until(check, timeout=timeout, message=what)


def keep_artifacts(shots: Path) -> Path:
    """Copy a failed run's screenshots out of pytest's temporary folders, which later runs rotate away."""
    target = Path(tempfile.gettempdir()) / "nrp-frontend-browser-failures" / time.strftime("%Y%m%d-%H%M%S")
    try:
        shutil.copytree(shots, target, dirs_exist_ok=True)
    except OSError:
        return shots
    return target


def leave(page: Any) -> None:
    """The workbench's leave button, then "Leave" (not "Shutdown") in its exit menu."""
    page.locator("button[title='Leave experiment']").click()
    page.get_by_text("Would you like to leave or shutdown the simulation?").wait_for()
    page.get_by_role("button", name="Leave", exact=True).click()
    page.wait_for_url("**/experiments-overview")


# Records every state the workbench renders in "Simulation State: <state>". Two status messages can
# reach the page in one WebSocket frame (the gateway forwards the broker's bytes as they come), and
# React then renders both states in one task: the page shows only the last, the first is the state
# text node's old value in the mutation records.
RECORD_STATES = """() => {
  window.__nrpStates = [];
  const push = (state) => {
    const states = window.__nrpStates;
    if (/^\\w+$/.test(state) && states[states.length - 1] !== state) states.push(state);
  };
  const shown = () => (/Simulation State: (\\w+)/.exec(document.body.innerText) || [])[1] || '';
  const isState = (node) => node.parentNode && node.parentNode.textContent.startsWith('Simulation State:');
  const options = {subtree: true, childList: true, characterData: true, characterDataOldValue: true};
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === 'characterData' && isState(record.target)) push(record.oldValue.trim());
    }
    push(shown());
  }).observe(document.body, options);
  push(shown());
}"""


def test_stock_frontend_flow(browser_run: tuple[UpProcess, Browser, dict[str, str]]) -> None:
    up, browser, info = browser_run
    page = browser.page
    base = _line(up, "Frontend: ").rstrip("/")
    user, password = _line(up, "Login: ").split(" / ")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {info['Token']}"
    storage = info["Storage"]
    try:
        # 1. no token: the app gets 477 and opens the login page; logging in returns to the app
        page.goto(base + "/")
        page.wait_for_url(re.compile(r".*/proxy/authentication/loginpage\?.*redirect_uri=.*"))
        browser.check_healthy("login-page")
        page.fill("#user", user)
        page.fill("#password", password)
        page.click("#submit")
        page.wait_for_url(re.compile(r"^[^?]*localhost:\d+/?$"))
        page.get_by_text("NRP Proxy Connection").wait_for()
        browser.check_healthy("home")

        # 2. My Experiments lists the bundled experiments; the Templates tab lists the catalogue
        page.goto(base + "/experiments-overview")
        panel = page.locator("[role=tabpanel]:visible")
        panel.get_by_text("tf_exchange", exact=True).wait_for()
        browser.check_healthy("my-experiments")
        page.get_by_role("tab", name="Templates").click()
        panel.get_by_text("mujoco_pendulum", exact=True).wait_for()
        browser.check_healthy("templates")
        before = {item["id"] for item in api.get(f"{storage}/proxy/storage/experiments").json()}
        panel.get_by_text("tf_exchange", exact=True).click()
        panel.get_by_role("button", name="Clone").click()
        clones = _wait(
            lambda: {item["id"] for item in api.get(f"{storage}/proxy/storage/experiments").json()} - before,
            "the template clone",
        )
        (clone,) = clones
        assert re.fullmatch(r"tf_exchange_\d+", clone)
        config = api.get(
            f"{storage}/storage/{clone}/simulation_config.json", params={"byname": "true"}
        ).json()
        name = config["SimulationName"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ tf_exchange", name)

        # rename it with the pencil next to its title; the name lives in its simulation_config.json
        page.get_by_role("tab", name="My Experiments").click()
        panel.get_by_text(name, exact=True).wait_for()
        entries = panel.locator("li")
        index = next(i for i, text in enumerate(entries.all_inner_texts()) if text.startswith(name))
        entry = entries.nth(index)
        entry.locator("button.list-entry-edit-buttons").first.click()
        entry.locator("input").fill("Browser test run")
        entry.locator("button.list-entry-edit-buttons").first.click()  # the tick
        name = "Browser test run"

        def stored_name() -> str:
            url = f"{storage}/storage/{clone}/simulation_config.json"
            return api.get(url, params={"byname": "true"}).json()["SimulationName"]

        _wait(lambda: stored_name() == name, "the rename to reach storage")
        panel.get_by_text(name, exact=True).wait_for()
        browser.check_healthy("renamed")

        # Scan Storage adopts a folder copied into storage by hand
        by_hand = Path(info["data_dir"]) / "storage" / "copied_by_hand"
        by_hand.mkdir()
        (by_hand / "simulation_config.json").write_text('{"SimulationName": "Copied by hand"}')
        panel.get_by_role("button", name="Scan Storage").click()
        page.get_by_text("1 added folders, 0 deleted folders.").wait_for()
        browser.check_healthy("scan-storage")
        page.get_by_role("button", name="Got it!").click()
        panel.get_by_text("Copied by hand", exact=True).wait_for()

        # 3. open the clone from My Experiments and initialize it: paused arrives over MQTT
        panel.get_by_text(name, exact=True).click()
        panel.get_by_role("button", name="Open").click()
        page.wait_for_url(f"**/experiment/{clone}")
        initialize = page.locator("button[title='Initialize experiment']")
        initialize.wait_for()
        _wait(initialize.is_enabled, "the Initialize button (servers and MQTT available)")
        browser.check_healthy("workbench")
        initialize.click()
        page.get_by_text("Simulation State: paused").wait_for()
        browser.check_healthy("paused")
        simulations = api.get(f"{info['REST API']}/simulation").json()
        (simulation,) = [s for s in simulations if s["experimentID"] == clone]
        sim_url = f"{info['REST API']}/simulation/{simulation['simulationID']}"

        # 4. Start: started, then completed (tf_exchange's SimulationTimeout is 1 s of simulation time)
        page.evaluate(RECORD_STATES)
        page.locator("button[title='Start']").click()
        page.get_by_text("Simulation State: completed").wait_for()
        states = page.evaluate("window.__nrpStates")
        assert states[-1] == "completed" and "started" in states, states
        browser.check_healthy("completed")
        assert api.get(sim_url).json()["state"] == "completed"

        # 5. leave and re-open: the page re-joins the running simulation through joinableServers.
        # Two polls stand between the simulation and the page: storage's registry asks the REST
        # server every 3 s, and the page asks storage for its experiment list every 3 s. The
        # workbench re-joins from the page's last list, read once when it opens, so first storage
        # must list the simulation, then the page's list must show it ("(1 simulation running)").
        leave(page)

        def joinable() -> list[str]:
            listed = api.get(f"{storage}/proxy/storage/experiments", params={"filter": clone}).json()
            return [j["server"] for j in listed[0]["joinableServers"]]

        assert _wait(joinable, "the registry's next poll to see the simulation") == ["local"]
        entry = panel.locator("li").filter(has=page.get_by_text(name, exact=True))
        entry.get_by_text("(1 simulation running)", exact=True).wait_for()
        panel.get_by_text(name, exact=True).click()
        panel.get_by_role("button", name="Open").click()
        page.wait_for_url(f"**/experiment/{clone}")
        page.get_by_text(f"simulation {simulation['simulationID']}").wait_for()
        page.get_by_text("Simulation State: completed").wait_for()
        browser.check_healthy("rejoined")
        leave(page)

        # 6. Running Simulations lists it; Shutdown stops it
        page.get_by_role("tab", name="Running Simulations").click()
        panel.get_by_text(name, exact=True).click()
        panel.get_by_text("completed", exact=True).wait_for()  # the Status column
        assert panel.get_by_text("local", exact=True).count() == 1  # the Server column
        assert panel.get_by_text("nrpuser", exact=True).count() == 1  # the Creator column
        browser.check_healthy("running-simulations")
        panel.get_by_role("button", name="Shutdown").click()
        _wait(lambda: api.get(sim_url).json()["state"] == "stopped", "the simulation to stop")
        panel.get_by_text(name, exact=True).wait_for(state="detached")
        browser.check_healthy("stopped")
        logs = api.get(f"{storage}/storage/{clone}").json()
        assert any(
            entry["name"].endswith(f"_simulation_{simulation['simulationID']}.log.zip") for entry in logs
        )
    except BaseException as exc:
        browser.snapshot("failed-step")
        kept = keep_artifacts(browser.shots)
        raise AssertionError(
            f"{exc}\nscreenshots and browser log: {kept}\nnrp up output:\n" + "\n".join(up.lines[-30:])
        ) from exc
    assert up.interrupt() == 0
    (browser.shots / "steps.json").write_text(json.dumps(sorted(p.name for p in browser.shots.iterdir())))
