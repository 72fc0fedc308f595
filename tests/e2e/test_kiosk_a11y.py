"""axe-core on every state of the kiosk page, and in forced colours: no WCAG A/AA violation.

axe-core comes bundled in `axe-playwright-python`; the rules run are those tagged WCAG 2.0,
2.1 and 2.2, levels A and AA. Each state is reached for real: dispatch's schedule and
announcements, a rider's requests, the broker stopped, the kiosk server gone.
"""

import json
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from tests.e2e.conftest import Browser, Kiosk, open_browser
from tests.e2e.content import ARABIC, IMPORTANT, INFO, URGENT, clear_messages, show
from tests.e2e.geometry import CONTRAST

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = "Felletin – place Courtaud"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
AXE = Axe()


async def violations(page: Any, *, skip: tuple[str, ...] = ()) -> list[str]:
    options: dict[str, Any] = {
        "runOnly": {"type": "tag", "values": WCAG_AA},
        "resultTypes": ["violations"],
        "rules": {rule: {"enabled": False} for rule in skip},
    }
    results = await AXE.run(page, options=options)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(
            " ".join(n["target"]) + f" [{n.get('failureSummary', '')}]" for n in v["nodes"]
        )
        for v in results.response["violations"]
    ]


async def opened(kiosk: Kiosk, browser: Browser) -> Any:
    page = browser.page
    await page.goto(kiosk.url)
    await expect(page.locator("#where")).to_have_text(HERE)
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    return page


async def full_screen(kiosk: Kiosk) -> None:
    messages = [("urgent", URGENT), ("important", IMPORTANT), ("info", INFO), ("info", ARABIC)]
    await show(kiosk, services=12, stops=6, messages=messages)


@pytest.fixture
def counted(shared_kiosk: Kiosk) -> Any:
    """An occupancy counter on the node while the test runs (the gauge shows)."""
    shared_kiosk.show_seats(27)
    yield shared_kiosk
    shared_kiosk.node_seats()


async def test_the_home_screen_before_any_schedule_has_no_violation(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    service = shared_kiosk.server.service
    await service.command_schedule({"place": None, "services": None, "stops": None})
    await clear_messages(shared_kiosk)
    async with open_browser(chromium) as browser:
        page = await opened(shared_kiosk, browser)
        await expect(page.locator("#services-empty")).to_be_visible()
        assert await violations(page) == []
        await browser.shot("a11y/home")


async def test_the_full_schedule_with_announcements_has_no_violation(
    counted: Kiosk, chromium: Any
) -> None:
    await full_screen(counted)
    async with open_browser(chromium, {"width": 800, "height": 480}) as browser:
        page = await opened(counted, browser)
        await expect(page.locator("#services li")).to_have_count(12)
        assert await violations(page) == []
        await browser.shot("a11y/schedule-800x480")


async def test_the_english_page_has_no_violation(counted: Kiosk, chromium: Any) -> None:
    await full_screen(counted)
    async with open_browser(chromium) as browser:
        page = await opened(counted, browser)
        await page.locator("#lang").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        assert await violations(page) == []
        await browser.shot("a11y/english")


async def test_after_requests_and_an_answer_the_page_has_no_violation(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    await full_screen(shared_kiosk)
    async with open_browser(chromium, {"width": 1024, "height": 600}) as browser:
        page = await opened(shared_kiosk, browser)
        await page.get_by_role("button", name="Demander un transport").click()
        await page.get_by_role("button", name="Poser une question sur France Travail").click()
        await expect(page.locator(".req-status[data-status='sent']")).to_have_count(2)
        pickup = [r for r in shared_kiosk.server.service.requests if r.kind == "pickup"][-1]
        await shared_kiosk.server.service.command_ack(
            {"request_id": pickup.request_id, "note": "Un véhicule passe vers 14 h 30."}
        )
        await expect(page.locator("#status-pickup")).to_have_attribute("data-status", "received")
        assert await violations(page) == []
        await browser.shot("a11y/after-requests-1024x600")


async def test_offline_the_page_has_no_violation(shared_kiosk: Kiosk, chromium: Any) -> None:
    await full_screen(shared_kiosk)
    async with open_browser(chromium) as browser:
        page = await opened(shared_kiosk, browser)
        shared_kiosk.broker.stop()
        try:
            await expect(page.locator("#offline")).to_be_visible(timeout=10_000)
            await page.get_by_role("button", name="Appeler le médiateur").click()
            await expect(page.locator("#status-mediator")).to_have_attribute(
                "data-status", "offline"
            )
            assert await violations(page) == []
            await browser.shot("a11y/offline")
        finally:
            shared_kiosk.broker.start()


async def test_with_the_kiosk_server_gone_the_page_has_no_violation(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    await full_screen(shared_kiosk)
    async with open_browser(chromium) as browser:
        page = await opened(shared_kiosk, browser)
        shared_kiosk.tasks[-1].cancel()
        try:
            await expect(page.locator("#lost")).to_be_visible(timeout=5_000)
            assert await violations(page) == []
            await browser.shot("a11y/server-gone")
        finally:
            await shared_kiosk.restart_server()


GAUGE_AND_DOT = """() => {
    const bg = (id) => getComputedStyle(document.querySelector(id)).backgroundColor;
    return {
        fill: bg("#gauge-fill"), track: bg("#gauge"),
        dot: bg("#link .dot"), pill: bg("#link"), page: bg("body"),
        width: document.querySelector("#gauge-fill").getBoundingClientRect().width,
    };
}"""


async def test_in_forced_colours_the_gauge_and_the_online_dot_stay_visible_and_axe_passes(
    counted: Kiosk, chromium: Any
) -> None:
    await full_screen(counted)
    async with open_browser(chromium, forced_colors="active") as browser:
        page = await opened(counted, browser)
        assert await page.evaluate("matchMedia('(forced-colors: active)').matches")
        await expect(page.locator("#occupancy")).to_be_visible()
        seen = await page.evaluate(GAUGE_AND_DOT)
        # the system colours replace the page's; the fill and the dot are drawn in the
        # text colour, against the canvas colour of what is around them
        assert seen["fill"] != seen["track"] and seen["width"] > 0, json.dumps(seen)
        assert seen["dot"] != seen["pill"] and seen["dot"] != seen["page"], json.dumps(seen)
        await browser.shot("a11y/forced-colours")
        # axe's color-contrast reads -webkit-text-fill-color, which in forced colours still
        # holds the page's own colour (#d3dcea on the theme's white, it says), not the
        # theme's colour Chromium paints (the screenshot: black on white). The contrast of
        # what is painted is checked from the computed colours instead.
        assert await violations(page, skip=("color-contrast",)) == []
        assert await page.evaluate(CONTRAST) == []
