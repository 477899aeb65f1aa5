"""The status page in a real headless browser: Debian's chromium driven by Playwright.

Playwright's own browser downloads are never used: it launches Debian's chromium
(`executable_path`). JavaScript is turned off, as the page must work without it. The test
saves a screenshot under its own output folder and prints where.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import wait_until

from shipsure.sandbox import faults, images

CHROMIUM = Path("/usr/bin/chromium")


def _chromium() -> Path:
    if not (CHROMIUM.is_file() or shutil.which("chromium")):
        pytest.skip("needs Debian's chromium (scripts/setup.sh installs it)")
    pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    return CHROMIUM if CHROMIUM.is_file() else Path(str(shutil.which("chromium")))


@pytest.mark.parametrize("registry_flavour", ["2.8"], indirect=True)
def test_status_page_in_chromium(
    watched_factory: Any, repo_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    watched = watched_factory(serve_args=("--probe-interval", "0"))
    registry, serve = watched.registry, watched.serve
    other = f"{repo_name}-other"
    v1 = images.push_image(registry.url, repo_name, "v1")
    images.push_image(registry.url, other, "stable")
    wait_until(
        lambda: "<b>v1</b>" in serve.get("/").text and "<b>stable</b>" in serve.get("/").text,
        what="the clean pushes to be verified",
    )
    lost = v1.layer_digests[0]
    faults.remove_blob_data(registry.root, lost)
    images.push_image(registry.url, repo_name, "v2", shared_layers=[f"{repo_name}:v1/0"])
    wait_until(serve.findings, what="the broken push to be found")

    screenshot = tmp_path / "shipsure-serve-status-page.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": 1400, "height": 1000}
            )
            page = context.new_page()
            blocked: list[str] = []
            # No external assets: any request leaving serve's origin is refused and noted.
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(serve.url)
                    else (blocked.append(route.request.url), route.abort())
                ),
            )
            answer = page.goto(serve.url + "/")
            assert answer is not None and answer.status == 200
            assert page.title() == f"shipsure: {registry.host}"
            assert "shipsure serve" in page.inner_text("header h1")

            # The broken tag is listed as broken, and its finding with the path to the layer.
            rows = page.locator("#tags tbody tr")
            broken = rows.filter(has_text="v2")
            assert broken.count() == 1
            assert "broken" in broken.inner_text()
            assert repo_name in broken.inner_text()
            finding = page.locator("#findings tbody tr")
            assert finding.count() == 1
            text = finding.inner_text()
            assert "v2" in text and repo_name in text
            assert f"layer 0 {lost}" in text
            assert "healthy" in rows.filter(has_text="stable").inner_text()
            page.screenshot(path=str(screenshot), full_page=True)

            # The search box filters on the server (a GET form, no JavaScript).
            page.fill("input[name=q]", "stable")
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url.endswith("/?q=stable")
            shown = page.locator("#tags tbody tr")
            assert shown.count() == 1
            assert "stable" in shown.inner_text()
            assert page.locator("#findings tbody tr").count() == 0
            page.screenshot(path=str(tmp_path / "shipsure-serve-search.png"), full_page=True)
            assert blocked == []
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nstatus page screenshot: {screenshot}")
