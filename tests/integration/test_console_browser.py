"""The operator console in a real Chromium (Debian's, through Playwright) against a real hub process with a
simulated pool that keeps working, the coordinator stub and three weeks of capacity history.

Each test saves a screenshot of what it looked at in its own tmp_path. Without /usr/bin/chromium the tests
skip with the reason, except in CI (CI=true), where they fail: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

# Playwright's wait_for_function evaluates strings, which the console's CSP forbids (as it should):
# the tests wait through locators (expect) instead.
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright, expect

from poolhub.app.tools.console_shots import CHROMIUM, DESKTOP, PHONE, DemoPool, demo_pool, sign_in

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            f"{CHROMIUM} is missing in CI: .ci/run installs it with apt-get install -y chromium"
        )
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)", allow_module_level=True)

# The canvas is transparent where nothing is drawn; getImageData gives colour and alpha apart.
BAND_RGBA = (179, 92, 0, 46)  # the band's fill, rgba(179, 92, 0, 0.18)
THRESHOLD_RGBA = (176, 0, 32, 255)
LINE_RGBA = (31, 78, 121, 255)


@pytest.fixture(scope="module")
async def pool(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoPool]:
    async with demo_pool(tmp_path_factory.mktemp("console-pool"), miners=24, warmup=10.0) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


class Session:
    """One browser context with its network log: every URL the page asked for."""

    def __init__(self, context: BrowserContext, page: Page, pool: DemoPool) -> None:
        self.context, self.page, self.pool = context, page, pool
        self.requests: list[str] = []
        context.on("request", self._record)

    def _record(self, request: Request) -> None:
        self.requests.append(request.url)

    def assert_no_other_host(self) -> None:
        assert self.requests, "the page made no request at all"
        foreign = [
            u for u in self.requests if not (u.startswith(self.pool.url + "/") or u.startswith("data:"))
        ]
        assert foreign == [], f"requests to another host: {foreign}"


@pytest.fixture
async def session(browser: Browser, pool: DemoPool) -> AsyncIterator[Session]:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    refused = "the server responded with a status of 401"  # the wrong-token test's expected answer
    yield Session(context, page, pool)
    await context.close()
    # A CSP violation or a script error shows in the console: the page must run clean.
    assert [e for e in errors if refused not in e] == []


async def api(pool: DemoPool, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=pool.url, timeout=30) as client:
        response = await client.get(
            path, params=params, headers={"Authorization": f"Bearer {pool.admin_token}"}
        )
    assert response.status_code == 200, response.text
    return response


async def text(page: Page, selector: str) -> str:
    return (await page.inner_text(selector)).strip()


def count_pixels_near(pixels: list[int], rgba: tuple[int, int, int, int], tolerance: int = 12) -> int:
    return sum(
        1
        for i in range(0, len(pixels), 4)
        if all(abs(pixels[i + k] - rgba[k]) <= tolerance for k in range(4))
    )


async def canvas_pixels(page: Page, selector: str) -> list[int]:
    data: list[int] = await page.eval_on_selector(
        selector,
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)",
    )
    return data


async def test_a_wrong_token_is_refused_and_never_lands_in_the_url(session: Session, tmp_path: Path) -> None:
    page = session.page
    response = await page.goto(f"{session.pool.url}/console")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    await page.fill("#token", "not-the-operator-token")
    await page.press("#token", "Enter")
    await expect(page.locator("#signin-error")).to_contain_text("refused")
    assert await page.is_hidden("#nav")
    assert await page.evaluate("sessionStorage.length") == 0
    assert not any("not-the-operator-token" in url for url in session.requests)
    await page.screenshot(path=tmp_path / "refused.png")
    session.assert_no_other_host()


async def test_overview_matches_the_json_api_and_updates_live(session: Session, tmp_path: Path) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    await expect(page.locator("#ov-rate")).not_to_have_text("…")
    everyone = await api(pool, "/v1/miners", limit=1)
    online = await api(pool, "/v1/miners", online="true", limit=1)
    status = (await api(pool, "/sla/status")).json()
    open_violations = await api(pool, "/sla/violations", limit=1)
    assert await text(page, "#ov-registered") == everyone.headers["x-total-count"]
    assert await text(page, "#ov-online") == online.headers["x-total-count"]
    assert await text(page, "#ov-sla-status") == status["status"]
    assert await text(page, "#ov-violations") == str(status["active_violations"])
    assert await text(page, "#ov-violations") == open_violations.headers["x-total-count"]
    assert float(await text(page, "#ov-rate")) > 0  # the simulated coordinator keeps matching
    assert (await text(page, "#ov-p99")).endswith("ms")
    assert "USD" in await text(page, "#ov-pending")
    used_before = await text(page, ".updated")
    await expect(page.locator(".updated")).not_to_have_text(used_before, timeout=10_000)
    await page.screenshot(path=tmp_path / "overview.png", full_page=True)

    # At phone width nothing overflows sideways and every card still reads.
    await page.set_viewport_size(PHONE)
    await page.wait_for_timeout(200)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.screenshot(path=tmp_path / "overview-phone.png", full_page=True)
    session.assert_no_other_host()


async def test_the_miners_table_filters_on_the_server_and_is_keyboard_usable(
    session: Session, tmp_path: Path
) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    # Keyboard only: Tab from the brand link to "Miners", then Enter.
    await page.focus(".brand")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#miner-filters")
    miners = (await api(pool, "/v1/miners", limit=500)).json()
    region = sorted({m["region"] for m in miners})[0]
    expected = sorted(m["miner_id"] for m in miners if m["region"] == region)
    await page.select_option("select[name=region]", region)
    await expect(page.locator("#miners-total")).to_have_text(f"{len(expected)} miners match")
    rows = await page.eval_on_selector_all(
        "#view tbody tr", "rows => rows.map(r => [r.cells[0].innerText, r.cells[2].innerText])"
    )
    assert sorted(miner for miner, _ in rows) == expected
    assert {cell for _, cell in rows} == {region}
    await page.screenshot(path=tmp_path / "miners.png", full_page=True)

    await page.select_option("select[name=online]", "false")
    offline = [m for m in miners if m["region"] == region and not m["online"]]
    await expect(page.locator("#miners-total")).to_have_text(f"{len(offline)} miners match")
    session.assert_no_other_host()


async def test_a_miner_page_draws_its_sla_charts_and_explains_a_refusal(
    session: Session, tmp_path: Path
) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    await page.goto(f"{pool.url}/console#/miners?sort=trust&order=desc")
    await page.wait_for_selector("#view tbody a")
    miner_id = await text(page, "#view tbody a")
    await page.click("#view tbody a")
    await page.wait_for_selector("#chart-uptime_pct canvas")
    for chart in ("uptime_pct", "response_time_ms", "completion_rate_pct"):
        box = f"#chart-{chart}"
        assert await page.get_attribute(box, "data-drawn") == "true"
        assert int(await page.get_attribute(box, "data-points") or 0) >= 2
        pixels = await canvas_pixels(page, f"{box} canvas")
        assert count_pixels_near(pixels, LINE_RGBA, tolerance=30) > 20  # the metric's line
    trust = (await api(pool, "/v1/miners", limit=500)).json()
    score = next(m["trust_score"] for m in trust if m["miner_id"] == miner_id)
    shown = float((await text(page, "#miner-trust")).split()[0])
    assert abs(shown - score) < 0.05  # the pool keeps working, so trust may move a little meanwhile

    await page.fill("#explain-form input[name=min_vram_gb]", "1000")
    await page.click("#explain-form button[type=submit]")
    await page.wait_for_selector("#explain-failed li")
    assert "vram" in await text(page, "#explain-failed")
    assert "not chosen" in await text(page, "#explain-result")
    await page.screenshot(path=tmp_path / "miner.png", full_page=True)
    session.assert_no_other_host()


async def test_capacity_draws_history_forecast_band_threshold_and_crossing(
    session: Session, tmp_path: Path
) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    await page.click("#nav a[data-page=capacity]")
    await page.wait_for_selector("#capacity-chart canvas")
    forecast = (await api(pool, "/sla/capacity/forecast", hours_ahead=168)).json()
    series = (await page.get_attribute("#capacity-chart", "data-series") or "").split("|")
    assert {"measured %", "forecast %", "95 % band (upper)", "alert threshold 80 %"} <= set(series)
    legend = await text(page, "#capacity-chart .u-legend")
    assert "95 % band" in legend and "alert threshold" in legend
    pixels = await canvas_pixels(page, "#capacity-chart canvas")
    assert count_pixels_near(pixels, BAND_RGBA) > 500  # the band is filled
    assert count_pixels_near(pixels, THRESHOLD_RGBA, tolerance=20) > 50  # the threshold line
    hours = forecast["hours_until_threshold"]
    assert hours is not None, "the seeded history should cross the alert threshold"
    assert re.search(rf"reached in {hours} h", await text(page, "#capacity-crossing"))
    crossing = await page.get_attribute("#capacity-chart", "data-crossing")
    first_over = next(
        p for p in forecast["points"] if p["utilization_pct"] >= forecast["alert_threshold_pct"]
    )
    assert crossing == first_over["timestamp"]
    assert await page.locator("#view table tbody tr").count() >= 1  # the recommendations
    await page.screenshot(path=tmp_path / "capacity.png", full_page=True)
    session.assert_no_other_host()


async def test_violations_filter_by_severity(session: Session, tmp_path: Path) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    await page.goto(f"{pool.url}/console#/violations")
    await page.wait_for_selector("#violation-filters")
    everything = (await api(pool, "/sla/violations", limit=500)).json()
    assert everything, "the simulated pool has failing and retired miners"
    severity = everything[0]["severity"]
    await page.select_option("select[name=severity]", severity)
    expected = [v for v in everything if v["severity"] == severity]
    await expect(page.locator("#violations-total")).to_have_text(f"{len(expected)} open")
    cells = await page.eval_on_selector_all("#view tbody tr", "rows => rows.map(r => r.cells[2].innerText)")
    assert cells and all(severity in cell for cell in cells)
    await page.screenshot(path=tmp_path / "violations.png", full_page=True)
    session.assert_no_other_host()


async def test_sync_now_delivers_pending_usage_to_the_coordinator(session: Session, tmp_path: Path) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    await page.goto(f"{pool.url}/console#/billing?hours=24")
    await page.wait_for_selector("#sync-now")

    def usd(value: str) -> Decimal:
        return Decimal(value.removesuffix(" USD").replace(",", ""))

    pending_before = usd(await text(page, "#billing-pending"))
    synced_before = usd(await text(page, "#billing-synced"))
    assert pending_before > 0 and synced_before == 0
    await page.screenshot(path=tmp_path / "billing-before.png", full_page=True)
    await page.click("#sync-now")
    await page.wait_for_selector("text=Last action from this tab")
    sent = re.search(r"Sent ([1-9][\d,]*) lines", await text(page, "#billing-action"))
    assert sent is not None
    # The pool keeps completing jobs, so new pending usage may appear; what was pending is now synced.
    assert usd(await text(page, "#billing-synced")) >= pending_before
    async with httpx.AsyncClient() as client:
        delivered = (await client.get(f"{pool.stub_url}/_stub/state")).json()
    assert delivered["events"] >= int(sent.group(1).replace(",", ""))
    await page.screenshot(path=tmp_path / "billing.png", full_page=True)
    session.assert_no_other_host()


async def test_sign_out_forgets_the_token(session: Session) -> None:
    page, pool = session.page, session.pool
    await sign_in(page, pool.url, pool.admin_token)
    assert await page.evaluate("sessionStorage.length") == 1
    await page.click("#signout")
    await page.wait_for_selector("#signin:not([hidden])")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.goto(f"{pool.url}/console#/miners")
    assert await page.is_visible("#signin-form")
    assert await page.locator("#view table").count() == 0
