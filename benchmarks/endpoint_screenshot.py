"""The README's screenshot of the endpoint page with the real default model: start the endpoint in
this process, simulate one stored event to its end through the API, open it on the page in headless
Chromium (Debian's, driven by Playwright) and save a full-page PNG. About 2-4 minutes on 2 cores.

    .venv/bin/python benchmarks/endpoint_screenshot.py --out docs/endpoint_page_real.png
"""

from __future__ import annotations

import argparse
import tempfile
import time

import httpx
from playwright.sync_api import sync_playwright

from mfray.endpoint.local import build_local_endpoint
from mfray.http_common import ServerThread

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/endpoint_page_real.png")
    ap.add_argument("--events", default="../shared/data/twitter_rumdect")
    ap.add_argument("--event-id", default="twitter_rumdect/E102")
    ap.add_argument("--method", default="mf_ibtune")
    ap.add_argument("--dimension", default="behavior", help="the dimension the chart shows")
    args = ap.parse_args()
    store = tempfile.mkdtemp(prefix="mfray-screenshot-")
    app = build_local_endpoint("default", [args.events], store)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        start = time.time()
        sim = client.post("/api/simulations", json={"event_id": args.event_id, "method": args.method, "horizon": 96,
                                                     "sim_start": 48, "agents_per_step": 16}).json()
        while client.get(f"/api/simulations/{sim['id']}").json()["status"] == "running":
            time.sleep(2)
        status = client.get(f"/api/simulations/{sim['id']}").json()["status"]
        print(f"simulated in {time.time() - start:.0f} s: {status}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url + "/")
            page.locator('[data-testid="sims"] li').first.click()
            page.wait_for_selector('[data-testid="progress"][data-status="done"]')
            page.get_by_test_id("dims").get_by_text(args.dimension).click()
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
