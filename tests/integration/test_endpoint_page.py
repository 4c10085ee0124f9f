"""The endpoint's page in a real headless browser (Debian's Chromium, driven by Playwright): start a
simulation of a stored event, see streamed steps draw the chart and fill the posts, insert a post
and see it land as an intervention, fork a what-if and see its curve. The server is the real app
on 127.0.0.1; the LLM is the stand-in behind the project's interface (this tests the page and the
endpoint's bookkeeping, not the model). Saves docs/endpoint_page.png, the README's screenshot.

Chromium comes from Debian (`make test` installs it where apt-get can, as CI's root can); where it
is missing the test is skipped with that reason, and never skipped under CI=true."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mfray.data import demo_event_path
from mfray.endpoint.local import build_local_endpoint
from mfray.http_common import ServerThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "endpoint_page.png"
# Flags for a sandboxed root user on a closed network (see the machine notes): no sandbox, no GPU,
# none of Chromium's background connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_events() -> Path:
    """The folder of the bundled demo event (offered by the server as demo/demo_event)."""
    return demo_event_path().parent


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make test does, as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def test_the_page_starts_a_simulation_streams_steps_intervenes_and_forks(browser, tmp_path, demo_events):
    app = build_local_endpoint("standin", [str(demo_events)], str(tmp_path / "store"))
    with ServerThread(app) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(server.url + "/")
        page.get_by_test_id("event").fill("demo/demo_event")
        page.get_by_test_id("horizon").fill("112")
        page.get_by_test_id("start").click()

        # Streamed steps arrive: the chart gets its simulated curves, the posts table fills.
        page.wait_for_selector('[data-testid="chart"] polyline[data-series="simulated"]', state="attached")
        page.wait_for_selector('[data-testid="progress"][data-status="done"]')
        assert page.locator('[data-testid="posts"] tbody tr').count() == 16  # one row per agent of a step
        assert page.get_by_test_id("meanfield").inner_text().strip()

        # A what-if from step 3 with an inserted post: its curve is drawn, and its step 3 opens with the post.
        page.get_by_test_id("fork-step").fill("3")
        page.get_by_test_id("fork-post").fill("Officials confirm the photo is fake.")
        page.get_by_test_id("fork").click()
        page.wait_for_selector('[data-testid="chart"] polyline[data-series="what-if"]', state="attached")
        page.get_by_test_id("dims").get_by_text("stance").click()  # another dimension redraws every series
        assert page.locator('[data-testid="chart"] polyline[data-series="what-if"]').count() > 0
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Open the what-if: its posts of step 3 hold the inserted one, marked as an intervention.
        page.locator('[data-testid="sims"] li', has_text="what-if").first.click()
        page.wait_for_selector('[data-testid="progress"][data-status="done"]')
        forked = app.state.host.listing()[0]
        assert forked["parent"]["step"] == 3 and forked["status"] == "done"
        records = app.state.host.get(forked["id"]).records
        inserted = [r for r in records if r.intervention]
        assert [(r.step, r.simulated_text) for r in inserted] == [(3, "Officials confirm the photo is fake.")]

        # Step a paused simulation by hand, insert a post from the page: it lands on the next step.
        page.get_by_test_id("horizon").fill("96")
        page.get_by_test_id("start-paused").check()
        page.get_by_test_id("start").click()
        page.wait_for_selector('[data-testid="progress"][data-status="paused"]')
        for shown in range(4):
            page.get_by_test_id("step").click()
            page.wait_for_selector(f'[data-testid="posts-step"]:text-is("{shown}")')
        page.get_by_test_id("post").fill("Police: no one was hurt.")
        page.get_by_test_id("intervene").click()
        page.wait_for_selector('[data-testid="message"]:has-text("post planned for step 4")')
        page.get_by_test_id("resume").click()
        page.wait_for_selector('[data-testid="progress"][data-status="done"]')
        stepped = app.state.host.listing()[0]
        hits = [r for r in app.state.host.get(stepped["id"]).records if r.intervention]
        assert [(r.step, r.simulated_text) for r in hits] == [(4, "Police: no one was hurt.")]
        page.close()
