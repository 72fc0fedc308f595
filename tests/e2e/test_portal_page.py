"""The portal's part of the page in Chromium on a phone, in the states the namespace test
cannot easily reach: no internet on board (said plainly), a phone the hotspot does not
see; and axe-core finds no WCAG A/AA violation with the portal's part on the page.

The portal listens on loopback here (the namespace test, tests/integration/test_hotspot.py,
runs it on a hotspot); its neighbour table and route table are files with nothing in them:
no phone seen, no default route.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import expect

from edged.config import parse_config
from edged.services.wifi import WifiService
from tests.e2e.conftest import SHOTS, Kiosk, open_browser
from tests.e2e.test_kiosk_a11y import violations
from tests.e2e.test_kiosk_page import WATCH
from tests.helpers.broker import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")
PHONE = {"width": 390, "height": 844}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def portal_url(
    shared_kiosk: Kiosk, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    tmp = tmp_path_factory.mktemp("portal")
    (tmp / "arp").write_text("IP address       HW type     Flags       HW address  Mask  Device\n")
    (tmp / "route").write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n")
    wifi = parse_config(
        f"""
[node]
fleet = "test"
id = "p"
profile = "shuttle"
[wifi]
enabled = true
ssid = "Navette 07"
country = "FR"
[wifi.portal]
port = {free_port()}
max_pages_per_peer = 16  # every page of these tests comes from 127.0.0.1
"""
    ).wifi
    service = WifiService(
        shared_kiosk.node.host,
        wifi,
        shared_kiosk.server.service,
        shared_kiosk.server.config,
        address="127.0.0.1",
        arp=tmp / "arp",
        routes=tmp / "route",
    )
    task = asyncio.create_task(service.portal.run())
    await asyncio.wait_for(service.portal.listening.wait(), 5)
    try:
        yield f"http://127.0.0.1:{service.portal.port}/"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_internet_on_board_the_portal_says_so_in_the_riders_language(
    chromium: Any, portal_url: str
) -> None:
    async with open_browser(chromium, PHONE, is_mobile=True, has_touch=True) as b:
        await b.page.goto(portal_url)
        status = b.page.locator("#portal-status")
        await expect(status).to_have_attribute("data-state", "no-internet")
        await expect(status).to_contain_text("pas d'internet pour le moment")
        await expect(b.page.locator("#portal-accept")).to_be_visible()
        assert await violations(b.page) == []
        await b.page.screenshot(path=str(SHOTS.parent / "portal" / "portal-no-internet-fr.png"))
    ctx = await chromium.new_context(  # a phone set to English
        viewport=PHONE, is_mobile=True, has_touch=True, locale="en-GB", timezone_id="Europe/Paris"
    )
    try:
        page = await ctx.new_page()
        await page.goto(portal_url)
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("#portal-status")).to_contain_text("no internet right now")
        await page.click("#portal-terms summary")
        await expect(page.locator("#portal-privacy")).to_contain_text(
            "neither your phone's address (MAC) nor your browsing is kept or sent"
        )
        assert await violations(page) == []
    finally:
        await ctx.close()


async def test_a_phone_the_hotspot_does_not_see_is_told_what_to_do(
    chromium: Any, portal_url: str
) -> None:
    async with open_browser(chromium, PHONE, is_mobile=True, has_touch=True) as b:
        await b.page.goto(portal_url)
        await expect(b.page.locator("#link")).to_have_attribute("data-state", "online")
        await b.page.tap("#portal-accept")
        status = b.page.locator("#portal-status")
        await expect(status).to_contain_text("déconnectez-vous puis reconnectez-vous")
        await expect(status).to_have_attribute("data-state", "error")
        await b.page.screenshot(path=str(SHOTS.parent / "portal" / "portal-unknown-phone-fr.png"))


async def test_a_phone_keeps_its_own_long_press_menu(chromium: Any, portal_url: str) -> None:
    """The screen's lock-down is the screen's: a rider may copy a phone number on a phone."""
    async with open_browser(chromium, PHONE, is_mobile=True, has_touch=True) as b:
        await b.page.goto(portal_url)
        await expect(b.page.locator("#link")).to_have_attribute("data-state", "online")
        await b.page.evaluate(WATCH, "contextmenu")
        await b.page.locator("#where").click(button="right")
        assert await b.page.evaluate("window.__prevented") is False


async def test_a_phone_keeps_its_zoom_and_its_text_selection(
    chromium: Any, portal_url: str
) -> None:
    """The screen refuses a pinch (it would stay for the next rider); a rider's own phone
    zooms (WCAG 1.4.4) and selects text to copy."""
    async with open_browser(chromium, PHONE, is_mobile=True, has_touch=True) as b:
        await b.page.goto(portal_url)
        await expect(b.page.locator("#link")).to_have_attribute("data-state", "online")
        cdp = await b.page.context.new_cdp_session(b.page)
        await cdp.send(
            "Input.synthesizePinchGesture",
            {"x": 150, "y": 300, "scaleFactor": 2, "gestureSourceType": "mouse"},
        )
        assert await b.page.evaluate("visualViewport.scale") > 1.5
        root = "getComputedStyle(document.documentElement)"
        assert await b.page.evaluate(f"{root}.touchAction") == "auto"
        assert await b.page.evaluate(f"{root}.userSelect") != "none"


async def test_a_phone_refused_its_live_page_still_zooms_and_selects(
    chromium: Any, portal_url: str
) -> None:
    """Until the first state the page took itself for the screen (`!state`): a phone whose
    live page was refused (the hotspot's pages all taken, its budget of requests spent) or
    not yet answered could neither zoom nor select the portal's terms, for as long as it
    lasted. The portal's page is a phone's from its first line."""
    async with open_browser(chromium, PHONE, is_mobile=True, has_touch=True) as b:
        await b.page.route("**/api/events", lambda route: route.fulfill(status=503, body=""))
        await b.page.goto(portal_url)
        await expect(b.page.locator("#portal-status")).not_to_have_attribute(
            "data-state", "loading"
        )
        root = "getComputedStyle(document.documentElement)"
        assert (
            await b.page.evaluate("document.documentElement.hasAttribute('data-screen')") is False
        )
        assert await b.page.evaluate(f"{root}.touchAction") == "auto"
        assert await b.page.evaluate(f"{root}.userSelect") != "none"
        cdp = await b.page.context.new_cdp_session(b.page)
        await cdp.send(
            "Input.synthesizePinchGesture",
            {"x": 150, "y": 300, "scaleFactor": 2, "gestureSourceType": "mouse"},
        )
        assert await b.page.evaluate("visualViewport.scale") > 1.5
