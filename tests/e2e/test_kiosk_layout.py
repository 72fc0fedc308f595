"""The kiosk page on the panels a Pi kiosk is built with, and on riders' phones.

At every screen of `geometry.SCREENS`, with realistic content from a few services to twelve
with long names, announcements and request statuses: the page never scrolls (only regions
inside it do), nothing sticks out sideways, the rider buttons and the announcements are on
screen, touch targets are at least 44 px and text at least the screen's floor. Screenshots
go to test-artifacts/kiosk/layout/.
"""

import asyncio
import json
import time
from typing import Any

import pytest
from playwright.async_api import expect

from edged.kiosk.marks import MAX_MARKS
from edged.kiosk.models import Message
from edged.services.events import JourneyChanged
from tests.e2e.conftest import Browser, Kiosk, open_browser
from tests.e2e.content import ARABIC, IMPORTANT, INFO, URGENT, show
from tests.e2e.geometry import CHECK, REGIONS, SCREENS, TARGET_PX

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = "Felletin – place Courtaud"
LONG_NOTE = (
    "Un véhicule de la Communauté de communes passe vous prendre vers 14 h 30 devant la "
    "mairie ; si vous ne pouvez pas attendre, appelez le 05 55 00 00 00."
)


STEADY_S = 3.0
"""How long a problem must last to count: the layout as a rider sees it, not a frame
taken while a font the page just asked for (an emoji's, a fallback for marks) loads."""


async def settle(page: Any) -> None:
    """Fonts loaded, then two frames: styles and layout after a resize or a state push
    are in place."""
    await page.evaluate(
        "() => document.fonts.ready.then(() => new Promise("
        "r => requestAnimationFrame(() => requestAnimationFrame(r))))"
    )


async def steady_problems(page: Any, screen: Any) -> list[str]:
    """The CHECK's problems on `screen` once they hold for `STEADY_S` (none: at once)."""
    deadline = time.monotonic() + STEADY_S
    while True:
        await settle(page)
        bad: list[str] = await page.evaluate(
            CHECK, {"minPx": screen.min_text_px, "targetPx": TARGET_PX}
        )
        if not bad or time.monotonic() > deadline:
            return bad
        await asyncio.sleep(0.1)


async def problems_on_every_screen(browser: Browser, scenario: str) -> dict[str, Any]:
    page = browser.page
    found: dict[str, Any] = {}
    for screen in SCREENS:
        await page.set_viewport_size(screen.viewport)
        bad = await steady_problems(page, screen)
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


MARKS = "".join(chr(0x0300 + i % 0x70) for i in range(200))  # every mark of U+0300..U+036F
"""Zalgo: 200 combining marks on one letter, one character a line cannot break."""
WRITTEN = {  # real writing with marks, which must reach the screen as written
    "vi": "Xe buýt đến lúc 9 giờ: Tie\u0302\u0301ng Vie\u0323\u0302t",
    "he": "הָאוֹטוֹבּוּס יַגִּיעַ בְּתֵשַׁע שִּׁ֤",
    "hi": "बस नौ बजे आएगी। क्षमा करें",
    "emoji": "Le bus 🚌 arrive 👩🏽‍🚒 1\ufe0f\u20e3 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
}
# the longest run of combining marks in any text on the page, and the texts that hold it
MOST_MARKS = """() => {
    let most = 0, where = "";
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
        for (const run of t.data.replace(/[\\u200C\\u200D]/gu, "").match(/\\p{M}+/gu) || []) {
            if (run.length > most) [most, where] = [run.length, t.parentElement.className];
        }
    }
    return [most, where];
}"""


async def test_zalgo_in_every_text_the_screen_shows_keeps_every_screen_s_layout(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    """Zalgo where dispatch's checks do not reach: an announcement and a run kept by an older
    release, the node's stop renamed by `geofences.set`. Each letter keeps at most
    MAX_MARKS marks and the page holds its layout at every screen; Vietnamese, Hebrew,
    Devanagari and emoji sequences in announcements keep every mark they have."""
    service = shared_kiosk.server.service
    await show_a_full_board(shared_kiosk)
    now = service._now_ms()
    stored = [("zalgo", f"Route{MARKS} barrée{MARKS}"), *WRITTEN.items()]
    for i, (mid, text) in enumerate(stored):  # as an older release kept them on disk
        message = Message(
            id=mid,
            lang="fr",
            text=text,
            priority="urgent" if i == 0 else "info",
            expires_ms=now + 3_600_000,
            received_ms=now + i,
        )
        service.messages.append(message)
    felletin = {"id": "felletin", "kind": "stop", "center": [45.8833, 2.1744], "radius_m": 80}
    await shared_kiosk.geofences.command_set(
        {"geofences": [{**felletin, "name": f"F{MARKS[:100]}elletin"}]}
    )
    shared_kiosk.node.bus.emit(
        JourneyChanged({"route_id": "L12", "line": "12", "headsign": f"G{MARKS[:70]}uéret"})
    )
    service.refresh()
    try:
        async with open_browser(chromium, SCREENS[0].viewport) as browser:
            page = browser.page
            await page.goto(shared_kiosk.url)
            await expect(page.locator("#messages li")).to_have_count(4 + len(stored))
            await expect(page.locator("#journey")).to_contain_text("Ligne 12 → G")
            await expect(page.locator("#where")).to_contain_text("elletin")
            found = await problems_on_every_screen(browser, "zalgo")
            assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)
            most, where = await page.evaluate(MOST_MARKS)
            assert most <= MAX_MARKS, f"{most} marks on one letter in {where}"
            for mid, text in WRITTEN.items():
                shown = page.locator(f'#messages li[data-id="{mid}"] .text')
                await expect(shown).to_have_text(text)
            assert browser.errors == []
    finally:
        service.messages[:] = [m for m in service.messages if m.id not in dict(stored)]
        await shared_kiosk.geofences.command_set({"geofences": []})
        shared_kiosk.node.bus.emit(JourneyChanged(None))
        shared_kiosk.node_seats()
        service.refresh()


async def test_an_announcement_of_blank_lines_shows_its_words_not_a_tall_blank(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    """Dispatch's text keeps its line breaks (pre-line): 300 blank lines pasted between two
    words made an announcement 300 lines tall, the other announcements far below the
    region's view. A run of blank lines shows as one."""
    no_requests(shared_kiosk)
    pasted = "Route barrée." + "\n \n" * 150 + "Détour par Saint-Vaury."
    await show(shared_kiosk, services=3, stops=3, messages=[("urgent", pasted), ("info", INFO)])
    async with open_browser(chromium, SCREENS[0].viewport) as browser:
        page = await opened(shared_kiosk, browser)
        first = page.locator('#messages li[data-id="m0"]')
        await expect(first).to_contain_text("Détour")
        lines = await first.evaluate(
            "el => el.querySelector('.text').getBoundingClientRect().height"
            " / parseFloat(getComputedStyle(el).lineHeight)"
        )
        assert lines < 6, f"{lines:.0f} lines"  # the words, one blank line, the words


UNBREAKABLE = {
    "jamo": "Bus : " + "\u1100" * 240,  # Hangul leading consonants: one syllable to a line
    "family": "Famille " + "👨" + "\u200d👨" * 120,  # a ZWJ chain: one emoji to a line
    "prepend": "Malayalam " + "\u0d4e" * 200 + "ക",  # prepended dot rephs: one letter
}


async def test_a_character_of_hundreds_of_code_points_keeps_every_screen_s_layout(
    shared_kiosk: Kiosk, chromium: Any
) -> None:
    """A grapheme cluster (what a line breaker takes as one character) can be made of any
    number of code points without a combining mark: Hangul jamo, an emoji ZWJ chain,
    prepended letters. Dispatch can send them; each was thousands of pixels wide on one
    line. The page keeps at most MAX_CLUSTER code points of one, which the longest emoji
    (a kiss with two skin tones) needs."""
    no_requests(shared_kiosk)
    messages = [("info", text) for text in UNBREAKABLE.values()]
    await show(shared_kiosk, services=3, stops=3, messages=messages)
    async with open_browser(chromium, SCREENS[0].viewport) as browser:
        page = await opened(shared_kiosk, browser)
        await expect(page.locator("#messages li")).to_have_count(len(UNBREAKABLE))
        found = await problems_on_every_screen(browser, "unbreakable")
        assert found == {}, json.dumps(found, indent=1)
        kiss = "🧑🏻\u200d❤️\u200d💋\u200d🧑🏼"
        await shared_kiosk.server.service.command_message({"id": "kiss", "text": f"Bravo {kiss}"})
        await expect(page.locator('#messages li[data-id="kiss"] .text')).to_have_text(
            f"Bravo {kiss}"
        )
