"""The kiosk page on the panels a Pi kiosk is built with, and on riders' phones.

At every screen of `geometry.SCREENS`, with realistic content from a few services to twelve
with long names, announcements and request statuses: the page never scrolls (only regions
inside it do), nothing sticks out sideways, the rider buttons and the announcements are on
screen, touch targets are at least 44 px and text at least the screen's floor. Screenshots
go to test-artifacts/kiosk/layout/.
"""

import json
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import Browser, Kiosk, open_browser
from tests.e2e.content import ARABIC, IMPORTANT, INFO, URGENT, show
from tests.e2e.geometry import CHECK, REGIONS, SCREENS, TARGET_PX

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = "Felletin – place Courtaud"
LONG_NOTE = (
    "Un véhicule de la Communauté de communes passe vous prendre vers 14 h 30 devant la "
    "mairie ; si vous ne pouvez pas attendre, appelez le 05 55 00 00 00."
)


async def settle(page: Any) -> None:
    """Two frames: styles and layout after a resize or a state push are in place."""
    await page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


async def problems_on_every_screen(browser: Browser, scenario: str) -> dict[str, Any]:
    page = browser.page
    found: dict[str, Any] = {}
    for screen in SCREENS:
        await page.set_viewport_size(screen.viewport)
        await settle(page)
        bad = await page.evaluate(CHECK, {"minPx": screen.min_text_px, "targetPx": TARGET_PX})
        if bad:
            found[screen.name] = {"bad": bad, "regions": await page.evaluate(REGIONS)}
        await browser.shot(f"layout/{scenario}-{screen.name}")
    return found


async def opened(kiosk: Kiosk, browser: Browser) -> Any:
    page = browser.page
    await page.goto(kiosk.url)
    await expect(page.locator("#where")).to_have_text(HERE)
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    return page


def no_requests(kiosk: Kiosk) -> None:
    """As if the earlier tests' requests were older than `request_display_s`."""
    kiosk.server.service.requests.clear()
    kiosk.server.service.refresh()


async def test_three_services_and_an_urgent_announcement_fit_every_screen(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    no_requests(shared_kiosk)
    await show(shared_kiosk, services=3, stops=3, messages=[("urgent", URGENT)])
    async with open_browser(chromium, SCREENS[0].viewport) as browser:
        page = await opened(shared_kiosk, browser)
        await expect(page.locator("#services li")).to_have_count(3)
        assert await problems_on_every_screen(browser, "few") == {}
        assert browser.errors == []


async def show_a_full_board(kiosk: Kiosk) -> None:
    """Seats, twelve long services, eight stops and the four kinds of announcement (one
    in Arabic), no request: the most a screen has to hold but the requests."""
    no_requests(kiosk)
    kiosk.show_seats(27)
    messages = [("urgent", URGENT), ("important", IMPORTANT), ("info", INFO), ("info", ARABIC)]
    await show(kiosk, services=12, stops=8, messages=messages)


async def test_twelve_long_services_eight_stops_and_four_announcements_fit_every_screen(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    await show_a_full_board(shared_kiosk)
    async with open_browser(chromium, SCREENS[0].viewport) as browser:
        page = await opened(shared_kiosk, browser)
        await expect(page.locator("#services li")).to_have_count(12)
        await expect(page.locator("#occupancy")).to_be_visible()
        assert await problems_on_every_screen(browser, "many") == {}
        await page.locator("#lang").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        assert await problems_on_every_screen(browser, "many-en") == {}
    shared_kiosk.node_seats()


async def test_an_assigned_run_with_a_long_headsign_and_twelve_services_fit_every_screen(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    await show_a_full_board(shared_kiosk)
    headsign = "Guéret – marché de services, place Bonnyaud"
    run = {"route_id": "L12", "trip_id": "L12-0815", "line": "12", "headsign": headsign}
    await shared_kiosk.command("journey.assign", run, "layout-j1")
    try:
        async with open_browser(chromium, SCREENS[0].viewport) as browser:
            page = await opened(shared_kiosk, browser)
            await expect(page.locator("#journey")).to_have_text(f"Ligne 12 → {headsign}")
            found = await problems_on_every_screen(browser, "journey")
            assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)
    finally:
        await shared_kiosk.command("journey.clear", {}, "layout-j2")
        shared_kiosk.node_seats()


async def test_requests_statuses_and_both_banners_still_fit_every_screen(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    """The fullest screen: every button's status (one with dispatch's long note), a status
    beside a service, the no-network and lost-the-kiosk banners, twelve services."""
    no_requests(shared_kiosk)
    messages = [("urgent", URGENT), ("important", IMPORTANT)]
    await show(shared_kiosk, services=12, stops=5, messages=messages)
    async with open_browser(chromium, SCREENS[0].viewport) as browser:
        page = await opened(shared_kiosk, browser)
        for kind in (
            "Demander un transport",
            "Appeler le médiateur",
            "Une question sur un service",
        ):
            await page.get_by_role("button", name=kind).click()
        await page.get_by_role("button", name="Poser une question sur CPAM de la Creuse").click()
        await expect(page.locator(".req-status[data-status='sent']")).to_have_count(4)
        pickup = next(r for r in shared_kiosk.server.service.requests if r.kind == "pickup")
        await shared_kiosk.server.service.command_ack(
            {"request_id": pickup.request_id, "note": LONG_NOTE}
        )
        await expect(page.locator("#status-pickup")).to_contain_text(LONG_NOTE)
        shared_kiosk.broker.stop()
        try:
            await expect(page.locator("#offline")).to_be_visible(timeout=10_000)
            shared_kiosk.tasks[-1].cancel()
            await expect(page.locator("#lost")).to_be_visible(timeout=5_000)
            found = await problems_on_every_screen(browser, "busy-offline")
            assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)
        finally:
            shared_kiosk.broker.start()
            await shared_kiosk.restart_server()
        await expect(page.locator("#lost")).to_be_hidden(timeout=10_000)
