"""The dashboard in a real browser: headless Debian Chromium drives the real server as a person would.

The TestClient tests prove the HTML; only a browser proves what a person gets: that the login form
really submits (CSRF token, cookie, redirect), that the charts actually draw, that the acknowledge
button moves the alert, that the CSV link really downloads a file, that the live feed's JavaScript
fills the table, and that an agent called ``<script>…`` stays text. It also writes the screenshots in
``docs/screenshots/`` (``CSAT_SCREENSHOTS=1``), so the pictures in the docs are of the current pages.

The server is ``DashboardServer`` (uvicorn in a thread, as ``csat serve`` runs it) over a migrated
SQLite file; Chromium is driven through the DevTools protocol by ``tests.cdp``. Ports come from
16780–16799 only, on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, select, update

from ivr.db import make_engine
from ivr.migrate import upgrade
from ivr.models import Call
from ivr.settings import Settings
from scoring.alert_store import AlertRow, get_alert, scan_new_answers
from scoring.exports import CSV_COLUMNS
from scoring.web.deps import RuntimeStatus
from scoring.web.server import DashboardServer
from tests.cdp import CdpConnection, CdpError
from tests.web_support import PASSWORDS, XSS_AGENT, seed_calls, seed_users, web_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PORTS = range(16780, 16800)
DOCS_SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WIDTH, HEIGHT = 1280, 900
MAX_SHOT_HEIGHT = 2400  # a long agent page is cut here: docs pictures, not a full archive
MAX_SHOT_BYTES = 400_000
STEP_TIMEOUT = 15.0
NOTE = "Called the customer's office, left a message; will try again at 3 pm."


# -- the server --------------------------------------------------------------------------------------


def _free_port(taken: set[int]) -> int:
    """A port of our range nobody listens on (bound and released: the caller binds it right after)."""
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    pytest.fail(f"no free port in {PORTS.start}–{PORTS.stop - 1} on 127.0.0.1")


@dataclass
class Site:
    url: str
    port: int
    engine: Engine
    settings: Settings
    alerts: list[AlertRow]


def _end_surveys(engine: Engine) -> None:
    """The seeded calls carry no survey end; give them one so the live feed has a backlog to show."""
    with engine.begin() as conn:
        for uid, started in conn.execute(select(Call.uniqueid, Call.survey_started_at)).all():
            conn.execute(
                update(Call)
                .where(Call.uniqueid == uid)  # type: ignore[arg-type]
                .values(survey_ended_at=started + timedelta(seconds=75))
            )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'csat.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    seed_users(engine)
    seed_calls(engine)
    _end_surveys(engine)
    server: DashboardServer | None = None
    try:
        taken: set[int] = set()
        for _attempt in range(3):  # another process may grab the port between probe and bind
            port = _free_port(taken)
            taken.add(port)
            settings = web_settings(web={"secret_key": "browser-test-key", "host": "127.0.0.1", "port": port})
            alerts = scan_new_answers(engine, settings)
            server = DashboardServer(settings, engine, RuntimeStatus())
            if server.start(wait_s=10):
                break
            server = None
        else:
            pytest.fail("the dashboard server did not start on any port tried")
        yield Site(f"http://127.0.0.1:{port}", port, engine, settings, alerts)
    finally:
        if server is not None:
            server.stop()
        engine.dispose()


# -- the browser --------------------------------------------------------------------------------------


class Chromium:
    """One headless Chromium with its own profile, killed (whole process group) on ``close``."""

    def __init__(self, profile: Path, port: int) -> None:
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={profile}",
                "--no-first-run",
                "--hide-scrollbars",
                "--mute-audio",
                "--lang=en-GB",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its zygote and renderers share our group: one kill ends them all
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        """Keeps reading stderr so a chatty Chromium never blocks on a full pipe."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            self._lines.put(line)

    def devtools_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        tail = "\n".join(self.stderr[-15:])
        pytest.fail(f"Chromium did not print its DevTools address within {timeout:.0f} s:\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass


@dataclass
class Browser:
    """A signed-out tab on the site, with the helpers a test step needs; every failure names its step."""

    cdp: CdpConnection
    session: str
    base: str
    downloads: Path
    shots: Path
    timings: dict[str, float] = field(default_factory=dict)
    screenshots: list[Path] = field(default_factory=list)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.cdp.call(method, params, session=self.session)

    def js(self, expression: str, step: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            pytest.fail(f"[{step}] script failed in the page: {text}")
        return result["result"].get("value")

    def _loaded(self, step: str, action: Any) -> None:
        self.cdp.drop_events("Page.loadEventFired")
        action()
        try:
            self.cdp.wait_event("Page.loadEventFired", STEP_TIMEOUT)
        except CdpError as exc:
            pytest.fail(f"[{step}] the page did not load: {exc}")

    def goto(self, path: str, step: str) -> None:
        self._loaded(step, lambda: self.call("Page.navigate", {"url": self.base + path}))

    def click(self, selector_js: str, step: str) -> None:
        """Clicks the element ``selector_js`` evaluates to and waits for the page it leads to."""

        def act() -> None:
            found = self.js(
                f"(() => {{ const el = {selector_js}; if (!el) return false; el.click(); return true; }})()",
                step,
            )
            if not found:
                pytest.fail(f"[{step}] nothing to click: {selector_js}")

        self._loaded(step, act)

    def wait_for(self, expression: str, step: str, timeout: float = STEP_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.js(expression, step)
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"[{step}] still false after {timeout:.0f} s: {expression} (last value {value!r})")

    def path(self) -> str:
        return self.js("location.pathname + location.search", "where are we")

    def screenshot(self, name: str) -> Path:
        """The page at 1280 wide, full length up to MAX_SHOT_HEIGHT; checked, then saved."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        height = min(int(size["height"] + 0.999), MAX_SHOT_HEIGHT)
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": max(height, HEIGHT), "scale": 1},
            },
        )
        data = base64.b64decode(shot["data"])
        target = self.shots / f"dashboard-{name}.png"
        target.write_bytes(data)
        check_screenshot(target)
        if os.environ.get("CSAT_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_SHOTS / target.name)
        self.screenshots.append(target)
        return target


def check_screenshot(path: Path) -> None:
    """A real picture of a page: a PNG of the asked width, not blank, small enough for the docs."""
    size = path.stat().st_size
    assert size < MAX_SHOT_BYTES, f"{path.name} is {size} bytes; the docs want < {MAX_SHOT_BYTES}"
    with Image.open(path) as img:
        assert img.format == "PNG", f"{path.name} is {img.format}, not PNG"
        assert img.width == WIDTH, f"{path.name} is {img.width} px wide, not {WIDTH}"
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
    distinct = len(colours) if colours is not None else 1 << 16
    assert distinct > 30, f"{path.name} has only {distinct} colours: a blank or broken page?"
    pixels = rgb.width * rgb.height
    plain = max(count for count, _colour in colours) if colours is not None else 0
    assert plain < 0.97 * pixels, f"{path.name} is {plain / pixels:.0%} one colour: nearly empty"


@pytest.fixture
def browser(site: Site, tmp_path: Path) -> Iterator[Browser]:
    """Depends on ``site`` so it is torn down first: the live page's event stream must not hold the
    server's shutdown."""
    if not Path(CHROMIUM).exists():
        reason = "chromium missing: run scripts/install-system-deps.sh"
        if os.environ.get("CSAT_SKIP_BROWSER") == "1":
            pytest.skip(reason)
        pytest.fail(reason)
    downloads, shots = tmp_path / "downloads", tmp_path / "screenshots"
    downloads.mkdir()
    shots.mkdir()
    chromium: Chromium | None = None
    cdp: CdpConnection | None = None
    try:
        chromium = Chromium(tmp_path / "profile", _free_port({site.port}))
        cdp = CdpConnection(chromium.devtools_url(STEP_TIMEOUT), timeout=STEP_TIMEOUT)
        pages = [t for t in cdp.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        target = (
            pages[0]["targetId"]
            if pages
            else cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        )
        session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        cdp.call(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
        )
        tab = Browser(cdp, session, site.url, downloads, shots)
        for domain in ("Page", "Runtime", "Log"):
            tab.call(f"{domain}.enable")
        # The docs show a European call centre: the page scripts' Intl dates as en-GB, not en-US.
        # (Native <input type=date> keeps Chromium's en-US UI format; neither --lang nor LANG changes it.)
        tab.call("Emulation.setLocaleOverride", {"locale": "en-GB"})
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        yield tab
    finally:
        if cdp is not None:
            with contextlib.suppress(CdpError, OSError):
                cdp.call("Browser.close")
            cdp.close()
        if chromium is not None:
            chromium.close()


# -- what the page scripts tell us --------------------------------------------------------------------

#: How many pixels each chart canvas has painted (alpha > 0): 0 means an empty chart.
CHART_PIXELS = """
[...document.querySelectorAll('canvas[data-chart]')].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
  return n;
})
"""

LEADERBOARD_ROWS = """
[...document.querySelectorAll('#leaderboard tbody tr')].map(tr => ({
  agent: tr.dataset.agent,
  rank: tr.cells[0].textContent.trim(),
  link: tr.cells[1].querySelector('a').textContent,
  n: tr.cells[3].textContent.trim(),
  csat: tr.querySelector('.figure').textContent.trim(),
}))
"""


def page_problems(cdp: CdpConnection) -> list[str]:
    """Uncaught script errors, console errors and dialogs (an executed XSS probe would open one)."""
    problems = []
    for event in cdp.events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            problems.append(f"script error: {params['exceptionDetails'].get('text')}")
        elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
            if params["entry"].get("url", "").endswith("/favicon.ico"):
                continue  # the browser asks on its own; the site has no icon (yet)
            problems.append(f"console: {params['entry'].get('text')} ({params['entry'].get('url', '')})")
        elif event["method"] == "Page.javascriptDialogOpening":
            problems.append(f"dialog opened: {params.get('message')!r}")
    return problems


# -- the test -----------------------------------------------------------------------------------------


def test_a_supervisor_works_the_dashboard_in_a_real_browser(site: Site, browser: Browser) -> None:
    started = time.monotonic()
    mark = started

    def timed(step: str) -> None:
        nonlocal mark
        now = time.monotonic()
        browser.timings[step] = round(now - mark, 2)
        mark = now

    # Sign in, as a person: the form, the CSRF token and the session cookie all go through the browser.
    browser.goto("/login", "open the login page")
    assert browser.path().startswith("/login"), "an anonymous visitor is not on the login page"
    browser.screenshot("login")
    fill = f"""
      document.querySelector('input[name=username]').value = {json.dumps("admin")};
      document.querySelector('input[name=password]').value = {json.dumps(PASSWORDS["admin"])};
      true
    """
    browser.js(fill, "fill in the login form")
    browser.click("document.querySelector('form[action=\"/login\"] button[type=submit]')", "sign in")
    assert browser.path() == "/", f"signing in led to {browser.path()}, not the overview"
    who = browser.js("document.querySelector('header .who span').textContent", "who is signed in")
    assert "admin" in who, f"the header shows {who!r} after signing in as admin"
    timed("login")

    # The overview: headline cards and a chart that really drew.
    cards = browser.js(
        "[...document.querySelectorAll('.cards .card .value')].map(e => e.textContent)", "overview"
    )
    assert cards and all(c.strip() for c in cards), f"overview cards are empty: {cards}"
    painted = browser.wait_for(
        f"(() => {{ const p = {CHART_PIXELS}; return p.length && p.every(n => n > 500) && p; }})()",
        "overview chart",
    )
    assert painted, "the overview's chart drew nothing"
    browser.screenshot("overview")
    timed("overview")

    # The leaderboard, reached through the menu: ranked by interval, the probe name shown as text.
    browser.click("document.querySelector('header nav a[href=\"/leaderboard\"]')", "open the leaderboard")
    assert browser.path() == "/leaderboard"
    rows = browser.js(LEADERBOARD_ROWS, "read the leaderboard")
    assert [r["agent"] for r in rows] == ["alice", "bob", "carol", XSS_AGENT], rows
    assert [r["rank"] for r in rows] == ["1", "2", "3", "—"], rows
    assert [r["n"] for r in rows] == ["8", "6", "6", "1"], rows
    assert rows[3]["link"] == XSS_AGENT, "the probe agent's name is not shown as plain text"
    injected = "[...document.scripts].some(s => s.textContent.includes('alert(\"x\")'))"
    assert browser.js(injected, "look for the probe as a script") is False, "the probe became a script"
    alice_csat = rows[0]["csat"]
    assert re.fullmatch(r"87\.5\s*%|88\s*%", alice_csat), (
        f"alice rated 4–5 on 7 of 8 calls, shown {alice_csat!r}"
    )
    browser.screenshot("leaderboard")
    timed("leaderboard")

    # The CSV export button: a real download, the same ranking as the page.
    browser.cdp.drop_events("Browser.downloadWillBegin")
    browser.js(
        "document.querySelector('.exports a[href^=\"/export/report.csv\"]').click(); true", "click CSV"
    )
    begun = browser.cdp.wait_event("Browser.downloadWillBegin", STEP_TIMEOUT)
    browser.cdp.wait_event(
        "Browser.downloadProgress",
        STEP_TIMEOUT,
        lambda p: p.get("guid") == begun["guid"] and p.get("state") in ("completed", "canceled"),
    )
    file = browser.downloads / begun["suggestedFilename"]
    assert file.exists(), (
        f"the CSV download finished but {file} is not there: {list(browser.downloads.iterdir())}"
    )
    assert re.fullmatch(r"csat-agent-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv", file.name), file.name
    table = list(csv.reader(io.StringIO(file.read_text(encoding="utf-8"))))
    assert tuple(table[0]) == CSV_COLUMNS, f"CSV header: {table[0]}"
    by_group = {row[1]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in table[1:]}
    assert [row[1] for row in table[1:4]] == ["alice", "bob", "carol"], table
    assert (by_group["alice"]["rank"], by_group["alice"]["responses"]) == ("1", "8")
    assert float(by_group["alice"]["csat_pct"]) == pytest.approx(87.5, abs=0.05)
    assert float(by_group["bob"]["csat_pct"]) == pytest.approx(50.0, abs=0.05)
    assert float(by_group["carol"]["csat_pct"]) == pytest.approx(100 / 6, abs=0.05)
    assert by_group[XSS_AGENT]["rank"] == "", "an agent with 1 answer must not be ranked in the export"
    assert browser.path() == "/leaderboard", "the download navigated away from the leaderboard"
    timed("csv export")

    # An agent's page, through the leaderboard link: the same CSAT figure, charts drawn.
    browser.click("document.querySelector('#leaderboard tr[data-agent=\"alice\"] a')", "open alice's page")
    assert browser.path() == "/agents/alice", browser.path()
    headline = browser.js("document.querySelector('.cards .card .value').textContent.trim()", "agent card")
    assert headline == alice_csat, f"alice's page says {headline!r}, the leaderboard {alice_csat!r}"
    painted = browser.wait_for(
        f"(() => {{ const p = {CHART_PIXELS}; return p.length === 2 && p.every(n => n > 500) && p; }})()",
        "agent charts",
    )
    assert painted, "alice's charts drew nothing"
    counts = browser.js(
        "[...document.querySelectorAll('#distribution td')].map(td => td.textContent)", "dist"
    )
    assert counts == ["1", "0", "0", "3", "4"], f"alice's ratings 1–5 shown as {counts}"
    browser.screenshot("agent")
    timed("agent page")

    # The alerts list, through the menu: every raised alert, the low CSAT of carol's among them.
    browser.click("document.querySelector('header nav a[href=\"/alerts\"]')", "open the alerts")
    assert browser.path() == "/alerts"
    listed = browser.js("document.querySelectorAll('main table tbody tr').length", "count alerts")
    assert site.alerts and listed == len(site.alerts), f"{listed} alerts listed, {len(site.alerts)} raised"
    target = next(a for a in site.alerts if a.agent == "carol" and a.question == "csat")
    browser.screenshot("alerts")
    timed("alerts list")

    # One alert: acknowledge it with a note, with the page's own button.
    browser.click(f"document.querySelector('main table a[href=\"/alerts/{target.id}\"]')", "open the alert")
    assert browser.path() == f"/alerts/{target.id}"
    heading = browser.js("document.querySelector('main h1').textContent", "alert heading")
    assert "Open" in heading, f"a fresh alert's heading: {heading!r}"
    browser.js(f"document.querySelector('#note').value = {json.dumps(NOTE)}; true", "type the note")
    browser.click("document.querySelector('.alert-move button[value=\"acknowledged\"]')", "acknowledge")
    assert browser.path() == f"/alerts/{target.id}", f"acknowledging led to {browser.path()}"
    heading = browser.js("document.querySelector('main h1').textContent", "alert heading after")
    assert "Acknowledged" in heading, f"after acknowledging, the heading says {heading!r}"
    history = browser.js(
        "[...document.querySelectorAll('main table tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))",
        "read the history",
    )
    assert len(history) == 1 and history[0][1:] == ["admin", "Open → Acknowledged", NOTE], history
    buttons = browser.js(
        "[...document.querySelectorAll('.alert-move button')].map(b => b.value)", "next moves"
    )
    assert buttons == ["called_back", "closed"], f"after acknowledging, the page offers {buttons}"
    stored = get_alert(site.engine, target.id)
    assert stored is not None and stored.alert.state == "acknowledged", stored
    assert [(e.user, e.from_state, e.to_state, e.note) for e in stored.events] == [
        ("admin", "open", "acknowledged", NOTE)
    ]
    browser.screenshot("alert")
    timed("acknowledge alert")

    # The live feed: the page's script opens the event stream and fills the table from it.
    browser.click("document.querySelector('header nav a[href=\"/live\"]')", "open the live feed")
    assert browser.path() == "/live"
    browser.wait_for("document.querySelector('#live-status').textContent === 'Live.'", "live feed connects")
    browser.wait_for(
        "document.querySelectorAll('#live-rows tr:not(#live-empty)').length === 20", "live backlog"
    )
    top = browser.js(
        "[...document.querySelector('#live-rows tr').cells].map(td => td.textContent)", "top row"
    )
    assert top[1:4] == ["alice", "sales", "completed"] and "csat 5" in top[4], f"newest survey shown as {top}"
    browser.screenshot("live")
    timed("live feed")

    problems = page_problems(browser.cdp)
    assert not problems, "the pages reported problems:\n" + "\n".join(problems)
    total = time.monotonic() - started
    print(f"\nbrowser steps (s): {browser.timings}; total {total:.1f} s")
    print("screenshots:", ", ".join(str(p) for p in browser.screenshots))
