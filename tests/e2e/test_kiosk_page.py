"""The kiosk page in headless Chromium: what riders see, and what their presses do.

Dispatch is played through the real broker (commands on `cmd/kiosk.*`, a subscriber for
`kiosk/requests`); the rider is played through the page, by touch (clicks) and keyboard.
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import expect

from edged.clock import ClockSource
from tests.e2e.conftest import Browser, Kiosk, running_kiosk
from tests.e2e.geometry import CONTRAST
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one Chromium for the module

HERE = "Felletin – place Courtaud"
SECOND_MS = 1000


def schedule() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "place": {"fr": "Guéret – marché de services", "en": "Guéret service market"},
        "services": [
            {
                "id": "cpam",
                "provider": "CPAM",
                "what": {"fr": "Assurance maladie", "en": "Health insurance"},
                "where": {"fr": "Camion 1", "en": "Truck 1"},
                "until": (now + timedelta(hours=3)).isoformat(),
            },
            {
                "id": "france-travail",
                "provider": "France Travail",
                "what": {"fr": "Emploi et formation", "en": "Jobs and training"},
                "where": {"fr": "Camion 2", "en": "Truck 2"},
                "start": (now - timedelta(hours=1)).isoformat(),
                "until": (now + timedelta(hours=2)).isoformat(),
            },
        ],
        "stops": [
            {"name": "Aubusson – gare routière", "eta": (now + timedelta(minutes=12)).isoformat()},
            {
                "name": "Guéret – marché de services",
                "eta": (now + timedelta(minutes=55)).isoformat(),
            },
        ],
    }


async def opened(kiosk: Kiosk, browser: Browser) -> Any:
    page = browser.page
    await page.goto(kiosk.url)
    await expect(page.locator("#where")).to_have_text(HERE)
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    return page


async def test_page_renders_in_french_with_the_node_the_stop_and_the_clock(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await expect(page.locator("#node-name")).to_have_text("shuttle-07")
    await expect(page.locator("#link-text")).to_have_text("En ligne")
    await expect(page.locator("#clock")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await expect(page.get_by_role("button", name="Demander un transport")).to_be_visible()
    await browser.shot("01-home")
    assert browser.errors == []  # no CSP violation, no script error


async def test_schedule_and_message_from_dispatch_show_on_the_page(
    kiosk: Kiosk, browser: Browser
) -> None:
    """How fast: `python -m bench.kiosk` (the aim: within a second), not a stopwatch here."""
    page = await opened(kiosk, browser)
    await kiosk.command("kiosk.schedule", schedule(), "s1")
    await expect(page.locator("#services li")).to_have_count(2)
    await kiosk.command(
        "kiosk.message",
        {
            "id": "welcome",
            "text": "Bienvenue à bord. Prochain départ à 14 h.",
            "priority": "important",
        },
        "m1",
    )
    await expect(page.locator("#messages li")).to_have_count(1)
    await expect(page.locator("#stops li")).to_have_count(2)
    await expect(page.locator("#stops li").first).to_contain_text("Aubusson – gare routière")
    await expect(page.locator("#place")).to_have_text("Guéret – marché de services")
    await expect(page.locator("#messages li")).to_have_text(
        "Important : Bienvenue à bord. Prochain départ à 14 h."
    )
    await browser.shot("02-schedule-and-message")


async def test_pickup_reaches_the_broker_and_the_screen_shows_sent_then_received(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    status = page.locator("#status-pickup")
    async with Collector(kiosk.broker.port, f"{kiosk.base}/kiosk/requests") as dispatch:
        await page.get_by_role("button", name="Demander un transport").click()
        await expect(status).to_have_attribute("data-status", "sent")
        await expect(status).to_have_text("Envoyé. En attente de la régulation.")
        await dispatch.wait_for(lambda: bool(dispatch.on("kiosk/requests")), 5, "the request")
        await browser.shot("03-request-sent")
        (request,) = [m.payload for m in dispatch.on("kiosk/requests")]
    assert request["kind"] == "pickup" and request["lang"] == "fr"
    assert request["stop"] == "felletin" and request["stop_name"] == HERE
    assert abs(request["lat"] - 45.8833) < 0.001 and request["fix_lost"] is False
    await kiosk.command(
        "kiosk.ack",
        {"request_id": request["request_id"], "note": "Un véhicule passe vers 14 h 30."},
        "a1",
    )
    await expect(status).to_have_attribute("data-status", "received")
    await expect(status).to_have_text("Reçu par la régulation.\nUn véhicule passe vers 14 h 30.")
    await browser.shot("04-request-received")


async def test_with_the_broker_down_the_screen_says_offline_and_the_request_is_sent_later(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    async with Collector(kiosk.broker.port, f"{kiosk.base}/kiosk/requests") as dispatch:
        kiosk.broker.stop()
        await expect(page.locator("#link")).to_have_attribute("data-state", "offline")
        await expect(page.locator("#offline")).to_be_visible()
        await page.get_by_role("button", name="Appeler le médiateur").click()
        status = page.locator("#status-mediator")
        await expect(status).to_have_attribute("data-status", "offline")
        await expect(status).to_have_text("Pas de réseau : envoi plus tard.")
        await expect(page.locator("#where")).to_have_text(HERE)  # the rest still works
        await browser.shot("05-offline")
        kiosk.broker.start()
        await dispatch.wait_for(lambda: bool(dispatch.on("kiosk/requests")), 15, "the request")
    assert dispatch.on("kiosk/requests")[0].payload["kind"] == "mediator"
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    await expect(status).to_have_attribute("data-status", "sent")


async def test_script_in_an_announcement_is_shown_as_text_and_never_runs(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    evil = (
        '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
        "<b>Alerte</b> javascript:alert(1)"
    )
    await kiosk.command("kiosk.message", {"id": "evil", "text": evil, "priority": "urgent"}, "e1")
    text = page.locator('#messages li[data-id="evil"] .text')
    await expect(text).to_have_text(evil)
    assert await page.locator("#messages img, #messages script, #messages b").count() == 0
    await asyncio.sleep(0.3)  # an onerror handler, had it been created, would have run by now
    assert await page.evaluate("window.__pwned") is None
    await browser.shot("06-injection-shown-as-text")


async def test_html_in_the_schedule_is_shown_as_text(kiosk: Kiosk, browser: Browser) -> None:
    page = await opened(kiosk, browser)
    plan = schedule()
    plan["services"][0]["provider"] = "<i>CPAM</i>"
    await kiosk.command("kiosk.schedule", plan, "s-evil")
    await expect(page.locator('#services li[data-id="cpam"] .provider')).to_have_text("<i>CPAM</i>")
    assert await page.locator("#services i").count() == 0


async def test_with_the_node_clock_unsynced_stops_show_their_times_alone(
    kiosk: Kiosk, browser: Browser
) -> None:
    """A Pi without NTP or a GPS fix may be days off (fake-hwclock's saved time): dispatch's
    times are true, "dans 12 min" against that clock is not. (The node clock is the one
    part played here: this machine's clock cannot be unsynchronised for a test.)"""
    service = kiosk.server.service
    days_behind = 3 * 86400 * SECOND_MS
    service.now = lambda: (int(time.time() * 1000) - days_behind, ClockSource.UNSYNCED)  # type: ignore[method-assign]
    plan = schedule()
    await kiosk.command("kiosk.schedule", plan, "s-unsynced")
    page = await opened(kiosk, browser)
    first = page.locator("#stops li").first
    eta = datetime.fromisoformat(plan["stops"][0]["eta"]).astimezone(ZoneInfo("Europe/Paris"))
    await expect(first.locator(".eta")).to_have_text(f"{eta:%H:%M}", use_inner_text=True)
    await expect(page.locator("#clock")).to_have_text("--:--")


@pytest_asyncio.fixture(loop_scope="module")
async def no_refill_kiosk(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Kiosk]:
    """The default burst, then one press per 10 minutes: none comes back during the test
    however slow the machine (at the default 6 a minute, one does after 10 s)."""
    async with running_kiosk(broker, tmp_path, rate_per_min=0.1) as k:
        yield k


async def test_a_flood_of_presses_is_refused_on_screen_and_sends_one_request(
    no_refill_kiosk: Kiosk, browser: Browser
) -> None:
    kiosk = no_refill_kiosk
    page = await opened(kiosk, browser)
    status = page.locator("#status-pickup")
    button = page.get_by_role("button", name="Demander un transport")
    async with Collector(kiosk.broker.port, f"{kiosk.base}/kiosk/requests") as dispatch:
        for _ in range(40):
            await button.click()
            if await status.get_attribute("data-status") == "limited":
                break
            await asyncio.sleep(0.02)
        await expect(status).to_have_text("Trop d'appuis : patientez un peu.")
        await browser.shot("07-rate-limited")
        codes = await page.evaluate(
            """async () => {
                const out = [];
                for (let i = 0; i < 30; i++) {
                    const r = await fetch("/api/requests", {
                        method: "POST",
                        headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({kind: "mediator"}),
                    });
                    out.push(r.status);
                }
                return out;
            }"""
        )
        await asyncio.sleep(1.0)  # anything that slipped through would be at the broker now
        assert codes == [429] * 30
        assert len(dispatch.on("kiosk/requests")) == 1


async def test_english_by_keyboard_switches_texts_lang_and_translations(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    await kiosk.command("kiosk.schedule", schedule(), "s2")
    for lang, text in (
        ("fr", "Le bus part dans 5 minutes."),
        ("en", "The bus leaves in 5 minutes."),
    ):
        await kiosk.command("kiosk.message", {"id": "go", "lang": lang, "text": text}, f"go-{lang}")
    await expect(page.locator("#messages li")).to_have_text("Le bus part dans 5 minutes.")
    await page.keyboard.press("Tab")  # the skip link
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "lang"
    await page.keyboard.press("Enter")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#messages li")).to_have_text("The bus leaves in 5 minutes.")
    await expect(page.get_by_role("button", name="Ask for a pickup")).to_be_visible()
    await expect(page.locator("#lang")).to_have_text("Français")
    await expect(page.locator("#services li").first).to_contain_text("Health insurance")
    await browser.shot("08-english")


async def test_keyboard_focus_is_clearly_visible(kiosk: Kiosk, browser: Browser) -> None:
    page = await opened(kiosk, browser)
    for _ in range(3):
        await page.keyboard.press("Tab")
    ring = await page.evaluate(
        """() => {
            const s = getComputedStyle(document.activeElement);
            return [document.activeElement.tagName, s.outlineStyle, parseFloat(s.outlineWidth)];
        }"""
    )
    assert ring[0] == "BUTTON" and ring[1] == "solid" and ring[2] >= 3
    await browser.shot("09-keyboard-focus")


TARGETS = """() => [...document.querySelectorAll("button, a")]
    .filter((e) => e.checkVisibility())
    .map((e) => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.width, r.height]; })
    .filter(([, w, h]) => w < 44 || h < 44)"""


async def test_every_state_meets_contrast_and_touch_target_sizes(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    kiosk.show_seats(27)
    await kiosk.command("kiosk.schedule", schedule(), "s3")
    for prio in ("info", "important", "urgent"):
        await kiosk.command(
            "kiosk.message", {"id": prio, "text": f"Annonce {prio}", "priority": prio}, prio
        )
    await page.get_by_role("button", name="Appeler le médiateur").click()
    await expect(page.locator("#messages li")).to_have_count(3)
    await expect(page.locator("#occupancy")).to_be_visible()
    await expect(page.locator("#status-mediator")).to_have_attribute("data-status", "sent")
    await page.evaluate(
        "for (const id of ['offline', 'lost']) document.getElementById(id).hidden = false"
    )
    assert await page.evaluate(CONTRAST) == []
    assert await page.evaluate(TARGETS) == []
    for lang in ("fr", "en"):
        assert await page.locator(f'[lang="{lang}"]').count() >= 1


async def test_occupancy_shows_a_gauge_and_words_and_hides_without_a_counter(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    await expect(page.locator("#occupancy")).to_be_hidden()
    kiosk.show_seats(12)
    await expect(page.locator("#occ-words")).to_have_text("18 places disponibles")
    gauge = page.get_by_role("meter")
    await expect(gauge).to_have_attribute("aria-valuenow", "12")
    await expect(gauge).to_have_attribute("aria-valuemax", "30")
    await browser.shot("10-occupancy")
    kiosk.show_seats(30)
    await expect(page.locator("#occ-words")).to_have_text("Complet")
    await browser.shot("11-occupancy-full")


async def test_the_page_reconnects_by_itself_when_the_kiosk_server_restarts(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    port = kiosk.server.port
    kiosk.tasks[-1].cancel()
    await expect(page.locator("#lost")).to_be_visible(timeout=5 * SECOND_MS)
    await expect(page.locator("#link")).to_have_attribute("data-state", "unknown")
    await expect(page.locator("#where")).to_have_text(HERE)  # the last state stays shown
    await browser.shot("12-kiosk-restarting")
    await kiosk.restart_server()
    assert kiosk.server.port == port
    await kiosk.command("kiosk.message", {"id": "back", "text": "De retour."}, "b1")
    await expect(page.locator("#messages li")).to_have_text("De retour.", timeout=5 * SECOND_MS)
    await expect(page.locator("#lost")).to_be_hidden()
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")


async def test_a_stream_gone_silent_is_said_lost_and_replaced_by_a_new_one(
    kiosk: Kiosk, browser: Browser
) -> None:
    """No error, no data: a phone that walked out of the wifi, a hung daemon. The page must
    not go on saying "online" over old times."""
    page = browser.page
    await page.clock.install()
    page = await opened(kiosk, browser)
    held: list[Any] = []

    async def hold(route: Any) -> None:
        held.append(route)  # not answered yet: the new stream hangs as the old one went

    await page.route("**/api/events", hold)
    beat = kiosk.server.config.heartbeat_s
    await page.clock.fast_forward(int((2 * beat + 6) * SECOND_MS))  # not a word meanwhile
    await page.clock.fast_forward(2 * SECOND_MS)  # the banner's delay
    await expect(page.locator("#lost")).to_be_visible()
    await expect(page.locator("#link")).to_have_attribute("data-state", "unknown")
    assert len(held) == 1
    await held[0].continue_()  # the network is back
    await page.unroute("**/api/events")
    await expect(page.locator("#lost")).to_be_hidden()
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")


async def left_in_english(kiosk: Kiosk, browser: Browser) -> Any:
    """The page on a clock the test moves, switched to English by a rider."""
    page = browser.page
    await page.clock.install()
    page = await opened(kiosk, browser)
    await page.locator("#lang").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    return page


async def test_a_screen_left_in_english_goes_back_to_french_after_the_clock_steps_back(
    kiosk: Kiosk, browser: Browser
) -> None:
    """NTP corrects a clock two hours fast (a wrong fake-hwclock save) while the screen
    waits for its next rider: the idle reset counts on the monotonic clock, not for hours."""
    page = await left_in_english(kiosk, browser)
    wall = await page.evaluate("Date.now()")
    await page.clock.set_system_time(datetime.fromtimestamp(wall / SECOND_MS - 7200, UTC))
    await page.clock.fast_forward(121 * SECOND_MS)  # idle_reset_s is 120 s
    await expect(page.locator("html")).to_have_attribute("lang", "fr")


async def test_a_stream_gone_silent_after_the_clock_stepped_back_is_replaced(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = browser.page
    await page.clock.install()
    page = await opened(kiosk, browser)
    held: list[Any] = []

    async def hold(route: Any) -> None:
        held.append(route)

    await page.route("**/api/events", hold)
    wall = await page.evaluate("Date.now()")
    await page.clock.set_system_time(datetime.fromtimestamp(wall / SECOND_MS - 7200, UTC))
    beat = kiosk.server.config.heartbeat_s
    await page.clock.fast_forward(int((2 * beat + 8) * SECOND_MS))
    await expect(page.locator("#lost")).to_be_visible()
    assert len(held) == 1
    await held[0].continue_()
    await page.unroute("**/api/events")


async def test_a_stream_refused_after_a_silence_is_replaced_by_one_stream_not_two(
    kiosk: Kiosk, browser: Browser
) -> None:
    """Back in the wifi after a long silence, the browser's own retry is refused (503): the
    page's retry (3 s) and the watchdog's must not both open a stream, one of them never
    closed (two streams a page, the second one soon refused by the server's limit)."""
    page = browser.page
    await page.clock.install()
    page = await opened(kiosk, browser)
    refused: list[Any] = []
    opening: list[Any] = []

    async def refuse(route: Any) -> None:
        refused.append(route)
        await route.fulfill(status=503, body="too_many_pages")

    async def count(route: Any) -> None:
        opening.append(route)
        await route.continue_()

    await page.route("**/api/events", refuse)
    await kiosk.restart_server()  # the stream ends; the browser's retry is refused
    for _ in range(100):
        if refused:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # its error event: the page's retry is now pending
    await page.unroute("**/api/events")
    await page.route("**/api/events", count)
    beat = kiosk.server.config.heartbeat_s
    await page.clock.fast_forward(int((2 * beat + 6) * SECOND_MS))  # the retry and the watchdog
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    await asyncio.sleep(1.0)
    await page.unroute("**/api/events")
    assert refused and len(opening) == 1


# What the page did with the next event of a type (a key's, not its modifier's): listened
# for last, after the page's own listeners.
WATCH = """(type) => {
    window.__prevented = new Promise((resolve) => {
        const seen = (e) => {
            if (["Control", "Meta", "Shift", "Alt"].includes(e.key)) return;
            removeEventListener(type, seen);
            resolve(e.defaultPrevented);
        };
        addEventListener(type, seen);
    });
}"""


async def test_a_long_press_or_right_click_on_the_screen_opens_no_browser_menu(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    await page.evaluate(WATCH, "contextmenu")
    await page.locator("#where").click(button="right")
    assert await page.evaluate("window.__prevented") is True


@pytest.mark.parametrize("keys", ["Control+o", "Control+p", "Control+s", "Control+u"])
async def test_a_keyboard_plugged_into_the_screen_opens_no_file_or_print_dialog(
    kiosk: Kiosk, browser: Browser, keys: str
) -> None:
    page = await opened(kiosk, browser)
    await page.evaluate(WATCH, "keydown")
    await page.keyboard.press(keys)
    assert await page.evaluate("window.__prevented") is True
    assert page.url == kiosk.url


async def test_a_link_dropped_on_the_page_is_taken_by_it_and_opens_nothing(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    taken = await page.evaluate(
        """() => ["dragover", "drop"].map((type) => {
            const data = new DataTransfer();
            data.setData("text/uri-list", "https://example.org/");
            const e = new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true});
            document.getElementById("where").dispatchEvent(e);
            return e.defaultPrevented;
        })"""
    )
    assert taken == [True, True]


# Shortcuts a keyboard plugged into the screen has, each a way out of the page or onto
# the node: history, downloads (its "show in folder" opens a file manager), developer
# tools, help (a web page), caret browsing's dialog, clearing data (the settings), zoom.
SHORTCUTS = [
    "Control+h",
    "Control+j",
    "F12",
    "Control+Shift+i",
    "Control+Shift+j",
    "F1",
    "F7",
    "Control+Shift+Delete",
    "Control+d",
    "Control+Equal",
    "Alt+Home",
]


async def test_a_keyboard_plugged_into_the_screen_opens_no_browser_page_or_tool(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await opened(kiosk, browser)
    let_through = []
    for keys in SHORTCUTS:
        await page.evaluate(WATCH, "keydown")
        await page.keyboard.press(keys)
        if not await page.evaluate("window.__prevented"):
            let_through.append(keys)
    assert let_through == []
    # the keys a rider uses are the page's own (a keyboard, a switch device sending them)
    for keys in ["Tab", "Shift+Tab", "Enter", "Space", "ArrowUp", "ArrowDown", "ArrowLeft",
                 "ArrowRight", "Home", "End", "PageDown", "Escape", "Shift+Space"]:  # fmt: skip
        await page.evaluate(WATCH, "keydown")
        await page.keyboard.press(keys)
        assert await page.evaluate("window.__prevented") is False, keys


async def test_the_screen_s_link_opens_no_new_window_tab_or_download(
    kiosk: Kiosk, browser: Browser
) -> None:
    """Shift, Ctrl or a middle click on a link opened the page again in a new window or tab
    (each one more live page, more of the Pi's memory: a few filled the screen's share of
    streams), Alt+click downloaded it."""
    page = await opened(kiosk, browser)
    opened_pages: list[Any] = []
    downloads: list[Any] = []
    page.context.on("page", lambda p: opened_pages.append(p))
    page.on("download", lambda d: downloads.append(d))
    skip = page.locator("a.skip")
    await skip.focus()
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.press("Control+Enter")
    for modifier in ["Shift", "Control", "Alt"]:
        await skip.click(modifiers=[modifier], force=True)
    await skip.click(button="middle", force=True)
    await asyncio.sleep(0.5)
    assert [p.url for p in opened_pages] == [] and len(downloads) == 0
    await skip.click(force=True)  # a plain tap still skips to the buttons
    assert page.url == f"{kiosk.url}#actions"


async def test_a_pinch_on_the_screen_leaves_it_unzoomed_for_the_next_rider(
    kiosk: Kiosk, browser: Browser
) -> None:
    """A page zoomed by a pinch stayed zoomed for every rider after (a reload kept it; the
    idle reset cannot undo it): the screen refuses the zoom. A touchpad's pinch (Ctrl and
    the wheel, as Chromium sends it) is played; a touch screen's is refused by
    `touch-action`, which headless Chromium does not play."""
    page = await opened(kiosk, browser)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send(
        "Input.synthesizePinchGesture",
        {"x": 300, "y": 300, "scaleFactor": 3, "gestureSourceType": "mouse"},
    )
    assert await page.evaluate("visualViewport.scale") == 1
    root = "getComputedStyle(document.documentElement)"
    assert await page.evaluate(f"{root}.touchAction") == "pan-x pan-y"
    # nor is a word left selected by a long press, its handles on screen for the next rider
    where = "getComputedStyle(document.getElementById('where'))"
    assert await page.evaluate(f"{where}.userSelect") == "none"


async def test_the_screen_goes_back_to_french_for_the_next_rider(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = await left_in_english(kiosk, browser)
    await page.clock.fast_forward(60_000)
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.clock.fast_forward(70_000)  # idle_reset_s is 120 s
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
