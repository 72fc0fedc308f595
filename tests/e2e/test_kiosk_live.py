"""What a state push does to the page: only what changed, told once, focus and words kept.

A screen reader user hears the stop reached, the next stop and a new announcement once; a
keyboard or switch user keeps their place; a rider sees the answer beside the button they
pressed; the next rider finds a clean screen. Plus the words themselves: French elision,
a service open since yesterday, French names marked French on the English page, the
direction of an Arabic announcement, emoji.
"""

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from hil.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.e2e.conftest import Browser, Kiosk, open_browser
from tests.e2e.content import (
    ARABIC,
    INFO,
    URGENT,
    away_from_midnight,
    clear_messages,
    schedule,
    show,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = "Felletin – place Courtaud"
SMALL = {"width": 800, "height": 480}

# Every element added to or removed from the board's lists, and every text changed there
# other than the minutes to a stop ("dans 12 min" moves on by itself).
WATCH = """() => {
    window.__changes = [];
    const observer = new MutationObserver((records) => {
        for (const r of records) {
            const el = r.target.nodeType === 3 ? r.target.parentElement : r.target;
            if (el && el.closest(".eta")) continue;
            for (const n of [...r.addedNodes, ...r.removedNodes]) {
                if (n.nodeType === 1) window.__changes.push(`${r.type} ${n.tagName} in #${el.id || el.className}`);
                else if (r.type === "childList") window.__changes.push(`text replaced in ${el.className || el.id}`);
            }
            if (r.type === "characterData") window.__changes.push(`text "${r.target.data}" in ${el.className || el.id}`);
        }
    });
    for (const id of ["stops", "messages", "services", "where"]) {
        observer.observe(document.getElementById(id), {childList: true, subtree: true, characterData: true});
    }
}"""

# Every non-empty text the live regions were given, in order.
LISTEN = """() => {
    window.__said = [];
    for (const id of ["announce", "alert"]) {
        const el = document.getElementById(id);
        new MutationObserver(() => {
            if (el.textContent) window.__said.push(`${id}: ${el.textContent}`);
        }).observe(el, {childList: true, subtree: true, characterData: true});
    }
}"""


async def opened(kiosk: Kiosk, browser: Browser) -> Any:
    page = browser.page
    await page.goto(kiosk.url)
    await expect(page.locator("#where")).to_have_text(HERE)
    await expect(page.locator("#link")).to_have_attribute("data-state", "online")
    return page


async def pushes_of_unrelated_state(kiosk: Kiosk, page: Any) -> None:
    """Seat counts change (each a state push); the page shows each one."""
    for count in (3, 4, 5):
        kiosk.show_seats(count)
        await expect(page.locator("#occ-words")).to_have_text(f"{30 - count} places disponibles")


@pytest.fixture
def no_requests(shared_kiosk: Kiosk) -> Any:
    shared_kiosk.server.service.requests.clear()
    shared_kiosk.server.service.refresh()
    yield shared_kiosk
    shared_kiosk.node_seats()


async def test_a_push_that_changes_nothing_in_a_list_rewrites_nothing_in_it(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await away_from_midnight()
    at = datetime.now(UTC)
    await show(kiosk, services=12, stops=6, messages=[("urgent", URGENT), ("info", INFO)], now=at)
    async with open_browser(chromium) as browser:
        page = await opened(kiosk, browser)
        await page.clock.install()
        await expect(page.locator("#services li")).to_have_count(12)
        await page.evaluate(WATCH)
        await pushes_of_unrelated_state(kiosk, page)
        await kiosk.server.service.command_schedule(schedule(12, 6, at))  # the same again
        await page.clock.run_for(16_000)  # the page's own 15 s refresh of times
        await asyncio.sleep(0.6)  # and the daemon's next look at the view
        assert await page.evaluate("window.__changes") == []
        await kiosk.server.service.command_message({"id": "new", "text": "Une de plus."})
        await expect(page.locator("#messages li")).to_have_count(3)
        assert await page.evaluate("window.__changes") == ["childList LI in #messages"]


async def test_the_next_stop_is_announced_once_per_change_in_its_own_words(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=3, stops=3, messages=[])
    first, second = schedule(3, 3)["stops"][:2]
    async with open_browser(chromium) as browser:
        page = await opened(kiosk, browser)
        await page.evaluate(LISTEN)
        await kiosk.server.service.command_schedule({"stops": [second]})
        await expect(page.locator("#stops li")).to_have_count(1)
        await pushes_of_unrelated_state(kiosk, page)
        later = {**second, "eta": first["eta"]}  # the same stop, a new time: no news
        await kiosk.server.service.command_schedule({"stops": [later]})
        await page.locator("#lang").click()  # the same news in English is not news
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.locator("#lang").click()
        await kiosk.server.service.command_schedule({"stops": [first, second]})
        await expect(page.locator("#stops li")).to_have_count(2)
        await asyncio.sleep(0.3)
        said = await page.evaluate("window.__said")
        assert len(said) == 2, said
        assert said[0].startswith(f"announce: Prochain arrêt : {second['name']}, vers ")
        assert said[1].startswith(f"announce: Prochain arrêt : {first['name']}, vers ")
        assert all("km" not in s for s in said)
        live = await page.locator("[aria-live], [role=status], [role=alert]").evaluate_all(
            "els => els.filter(e => e.closest('#board') && !e.matches('.req-status')).length"
        )
        assert live == 0  # the board's only live regions are the rider's own request statuses


async def test_arriving_at_a_stop_and_an_urgent_announcement_are_told_once(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=3, stops=3, messages=[])
    geofences = kiosk.geofences
    fix = kiosk.fix
    away = {"id": "felletin", "name": HERE, "kind": "stop", "center": [46.5, 2.5], "radius_m": 80}
    gare = {
        "id": "gare",
        "name": "Gare de Felletin",
        "kind": "stop",
        "center": [fix.lat, fix.lon],
        "radius_m": 800,
    }
    async with open_browser(chromium) as browser:
        page = await opened(kiosk, browser)
        await page.evaluate(LISTEN)
        try:
            await geofences.command_set({"geofences": [away]})
            await expect(page.locator("#where")).not_to_have_text(HERE, timeout=5_000)
            await geofences.command_set({"geofences": [away, gare]})
            await expect(page.locator("#where")).to_have_text("Gare de Felletin", timeout=5_000)
            await kiosk.server.service.command_message(
                {"id": "u", "text": URGENT, "priority": "urgent"}
            )
            await expect(page.locator("#messages li")).to_have_count(1)
            await asyncio.sleep(1.0)  # more fixes, more looks at the view
            said = await page.evaluate("window.__said")
        finally:
            await geofences.command_set({"geofences": []})
            await clear_messages(kiosk)
        assert said == [
            "announce: Arrêt : Gare de Felletin.",
            f"alert: Nouvelle annonce : Urgent : {URGENT}",
        ]


async def test_focus_stays_on_a_service_button_across_state_pushes(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=12, stops=4, messages=[("info", INFO)])
    async with open_browser(chromium, SMALL) as browser:
        page = await opened(kiosk, browser)
        await page.clock.install()
        target = page.get_by_role("button", name="Poser une question sur Mission locale")
        for _ in range(40):  # the way a keyboard or a switch gets there
            await page.keyboard.press("Tab")
            if await target.evaluate("el => el === document.activeElement"):
                break
        await target.evaluate("el => { window.__focused = el; }")
        await pushes_of_unrelated_state(kiosk, page)
        await kiosk.server.service.command_message({"id": "more", "text": "Nouvelle annonce."})
        await kiosk.server.service.command_schedule(schedule(12, 3))  # a stop passed
        await expect(page.locator("#stops li")).to_have_count(3)
        await page.clock.run_for(16_000)
        await asyncio.sleep(0.7)
        assert await page.evaluate(
            "document.activeElement === window.__focused && window.__focused.isConnected"
        )
        await browser.shot("live/focus-kept-800x480")


async def test_the_answer_shows_beside_the_pressed_service_button(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=12, stops=4, messages=[("urgent", URGENT)])
    async with open_browser(chromium, SMALL) as browser:
        page = await opened(kiosk, browser)
        button = page.get_by_role(
            "button", name="Poser une question sur Caisse d'allocations familiales (CAF)"
        )
        await button.click()
        status = page.locator('#services li[data-id="caf"] .req-status')
        await expect(status).to_have_text("Envoyé. En attente de la régulation.")
        await expect(page.locator("#status-service")).to_have_text("")  # not at the bottom
        geometry = await page.evaluate(
            """() => {
                const b = document.activeElement.getBoundingClientRect();
                const s = document.querySelector('#services li[data-id="caf"] .req-status')
                    .getBoundingClientRect();
                const region = document.getElementById("services-card").getBoundingClientRect();
                return {gap: s.top - b.bottom, overlap: Math.min(b.right, s.right) - Math.max(b.left, s.left),
                        statusInRegion: s.top >= region.top && s.bottom <= region.bottom,
                        inViewport: s.bottom <= innerHeight && s.top >= 0,
                        rem: parseFloat(getComputedStyle(document.documentElement).fontSize)};
            }"""
        )
        assert 0 <= geometry["gap"] <= geometry["rem"], geometry  # right under the button
        assert geometry["overlap"] > 0 and geometry["statusInRegion"] and geometry["inViewport"]
        await browser.shot("live/answer-beside-service-800x480")
        await page.get_by_role("button", name="Appeler le médiateur").click()
        near = await page.evaluate(
            """() => {
                const b = document.querySelector('.press[data-kind="mediator"]').getBoundingClientRect();
                const s = document.getElementById("status-mediator").getBoundingClientRect();
                return {gap: b.top - s.bottom, overlap: Math.min(b.right, s.right) - Math.max(b.left, s.left)};
            }"""
        )
        await expect(page.locator("#status-mediator")).to_have_attribute("data-status", "sent")
        assert 0 <= near["gap"] <= 10 and near["overlap"] > 0, near  # just above the button


async def test_the_next_rider_gets_french_no_earlier_status_and_every_region_at_the_top(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=12, stops=6, messages=[("info", INFO)])
    async with open_browser(chromium, SMALL) as browser:
        page = browser.page
        await page.clock.install()
        page = await opened(kiosk, browser)
        await page.get_by_role("button", name="Demander un transport").click()
        await page.get_by_role("button", name="Poser une question sur France Travail").click()
        await expect(page.locator(".req-status[data-status='sent']")).to_have_count(2)
        await page.locator("#lang").click()
        await page.locator("#services-card").evaluate("el => { el.scrollTop = el.scrollHeight; }")
        assert await page.locator("#services-card").evaluate("el => el.scrollTop") > 0
        await page.clock.fast_forward(121_000)  # idle_reset_s is 120 s
        await expect(page.locator("html")).to_have_attribute("lang", "fr")
        await expect(page.locator(".req-status:not(:empty)")).to_have_count(0)
        assert await page.evaluate(
            "[...document.querySelectorAll('[data-scroll]')].every(el => el.scrollTop === 0)"
        )
        assert await page.evaluate("document.activeElement === document.body")
        await browser.shot("live/after-idle-reset-800x480")
        await page.get_by_role("button", name="Demander un transport").click()  # pressed again
        await expect(page.locator("#status-pickup")).to_have_attribute("data-status", "sent")


async def test_the_words_elision_days_french_names_and_direction(
    no_requests: Kiosk, chromium: Any
) -> None:
    kiosk = no_requests
    await show(kiosk, services=3, stops=3, messages=[("info", ARABIC), ("info", INFO)])
    geofences = kiosk.geofences
    fix = kiosk.fix
    near = [fix.lat + 0.02, fix.lon]  # about 2.2 km north
    async with open_browser(chromium) as browser:
        page = await opened(kiosk, browser)
        cpam = page.locator('#services li[data-id="cpam"] .detail')
        await expect(cpam).to_contain_text("depuis hier 18:49, jusqu'à demain 12:00")
        arabic = page.locator("#messages li").filter(has_text=ARABIC)
        assert await arabic.evaluate("el => getComputedStyle(el).direction") == "rtl"
        french = page.locator("#messages li").filter(has_text="Bienvenue")
        assert await french.evaluate("el => getComputedStyle(el).direction") == "ltr"
        try:
            for name, said in (("Ahun", "près d'Ahun"), ("Le Grand-Bourg", "près du Grand-Bourg")):
                fence = {
                    "id": "felletin",
                    "name": name,
                    "kind": "stop",
                    "center": near,
                    "radius_m": 100,
                }
                await geofences.command_set({"geofences": [fence]})
                await expect(page.locator("#where")).to_contain_text(
                    f"En route, {said} (", timeout=5_000
                )
            await page.locator("#lang").click()
            await expect(page.locator("#where")).to_contain_text(
                "On the way, near Le Grand-Bourg ("
            )
            await expect(page.locator('#where span[lang="fr"]')).to_have_text("Le Grand-Bourg")
            await expect(cpam).to_contain_text("since yesterday 18:49, until tomorrow 12:00")
            for selector in ("#services .provider", "#stops .stop-name", "#place"):
                langs = await page.locator(selector).evaluate_all("els => els.map(e => e.lang)")
                assert langs and set(langs) == {"fr"}, (selector, langs)
            assert await cpam.locator('span[lang="fr"]').count() == 0  # its English text
            await browser.shot("live/english-near-grand-bourg")
        finally:
            await geofences.command_set({"geofences": []})


# Pairs of neighbouring parts of `el` (its child nodes) drawn out of their order on one
# line: a part that begins left of where the part before it ends.
OUT_OF_ORDER = """(el) => {
    const boxes = [...el.childNodes].map((n) => {
        const range = document.createRange();
        range.selectNodeContents(n);
        return [...range.getClientRects()];
    });
    const bad = [];
    for (let i = 1; i < boxes.length; i++) {
        for (const a of boxes[i - 1]) for (const b of boxes[i]) {
            if (Math.abs(a.top - b.top) < 1 && b.left < a.right - 0.5) {
                bad.push(`${el.childNodes[i].textContent} drawn before ${el.childNodes[i - 1].textContent}`);
            }
        }
    }
    return bad;
}"""
HEBREW = "תחנה מרכזית"


async def test_a_right_to_left_name_leaves_the_words_around_it_in_their_place(
    no_requests: Kiosk, chromium: Any
) -> None:
    """A Hebrew or Arabic name inside a French or English line is isolated: the distance
    after it, or the opening hours, stay after it (unisolated, "(2,2 km)" took the name's
    direction and was drawn before it)."""
    kiosk = no_requests
    await show(kiosk, services=1, stops=1, messages=[])
    service = kiosk.server.service
    slot = schedule(2)["services"][1]  # open today: "14:02 to 17:32" on the English page
    await service.command_schedule({"services": [{**slot, "where": {"fr": HEBREW, "en": HEBREW}}]})
    near = [kiosk.fix.lat + 0.02, kiosk.fix.lon]
    fence = {"id": "felletin", "name": HEBREW, "kind": "stop", "center": near, "radius_m": 100}
    async with open_browser(chromium) as browser:
        page = await opened(kiosk, browser)
        detail = page.locator('#services li[data-id="france-travail"] .detail')
        try:
            await kiosk.geofences.command_set({"geofences": [fence]})
            await expect(page.locator("#where")).to_contain_text(f"près de {HEBREW} (")
            for lang in ("fr", "en"):
                await expect(page.locator("html")).to_have_attribute("lang", lang)
                assert await page.locator("#where").evaluate(OUT_OF_ORDER) == [], lang
                assert await detail.evaluate(OUT_OF_ORDER) == [], lang
                await page.locator("#lang").click()
            await browser.shot("live/hebrew-near")
        finally:
            await kiosk.geofences.command_set({"geofences": []})


async def test_emoji_in_an_announcement_are_drawn_by_the_emoji_font(
    no_requests: Kiosk, chromium: Any
) -> None:
    await show(no_requests, services=3, stops=3, messages=[("urgent", URGENT)])
    async with open_browser(chromium) as browser:
        page = await opened(no_requests, browser)
        await expect(page.locator("#messages li")).to_have_text(f"Urgent : {URGENT}")
        await browser.shot("live/emoji-drawn")


async def test_emoji_a_screen_without_an_emoji_font_cannot_draw_are_dropped(
    no_requests: Kiosk, tmp_path: Path
) -> None:
    """A screen with DejaVu only (no emoji font): no empty boxes, the words stay."""
    from playwright.async_api import async_playwright

    conf = tmp_path / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f"<dir>/usr/share/fonts/truetype/dejavu</dir><cachedir>{tmp_path}/cache</cachedir>"
        "<alias><family>sans-serif</family><prefer><family>DejaVu Sans</family></prefer></alias>"
        "<alias><family>system-ui</family><prefer><family>DejaVu Sans</family></prefer></alias>"
        "</fontconfig>"
    )
    await show(no_requests, services=3, stops=3, messages=[("info", "Départ 🚌 à 14 h 🎉 !")])
    env = {**os.environ, "FONTCONFIG_FILE": str(conf)}
    async with async_playwright() as p:
        bare = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, env=env)
        try:
            async with open_browser(bare) as browser:
                page = await opened(no_requests, browser)
                await expect(page.locator("#messages li")).to_have_text("Départ à 14 h !")
                await browser.shot("live/emoji-dropped-without-font")
        finally:
            await bare.close()
