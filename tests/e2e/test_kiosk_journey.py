"""The kiosk page shows the line of the run dispatch assigned (`journey.assign`), as text."""

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import Browser, Kiosk
from tests.e2e.geometry import SCREENS

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_an_assigned_line_shows_under_the_mode_and_goes_with_clear(
    kiosk: Kiosk, browser: Browser
) -> None:
    page = browser.page
    await page.goto(kiosk.url)
    journey = page.locator("#journey")
    await expect(journey).to_be_hidden()
    run = {"route_id": "L1", "trip_id": "L1-0815", "line": "<b>1</b>", "headsign": "Guéret"}
    await kiosk.command("journey.assign", run, "j1")
    await expect(journey).to_have_text("Ligne <b>1</b> → Guéret")  # text, never markup
    await page.locator("#lang").click()
    await expect(journey).to_have_text("Line <b>1</b> → Guéret")
    await browser.shot("journey-line")
    await kiosk.command("journey.clear", {}, "j2")
    await expect(journey).to_be_hidden()
    assert browser.errors == []


OVERLAP = """() => {
    const a = document.getElementById("mode").getBoundingClientRect();
    const b = document.getElementById("journey").getBoundingClientRect();
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return w > 0.5 && h > 0.5 ? `${w.toFixed(0)}x${h.toFixed(0)} px` : null;
}"""


async def test_the_line_never_covers_the_mode_on_any_screen(kiosk: Kiosk, browser: Browser) -> None:
    page = browser.page
    await page.goto(kiosk.url)
    run = {"route_id": "L1", "trip_id": "L1-0815", "line": "1", "headsign": "Guéret – gare"}
    await kiosk.command("journey.assign", run, "j3")
    await expect(page.locator("#journey")).to_have_text("Ligne 1 → Guéret – gare")
    await expect(page.locator("#mode")).to_have_text("Transport à la demande")
    covered = {}
    for screen in SCREENS:
        await page.set_viewport_size(screen.viewport)
        await page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
        if (overlap := await page.evaluate(OVERLAP)) is not None:
            covered[screen.name] = overlap
            await browser.shot(f"journey-covers-mode-{screen.name}")
    assert covered == {}


ROW = """() => {
    const top = document.querySelector(".top"), style = getComputedStyle(top);
    const t = top.getBoundingClientRect();
    const left = t.left + parseFloat(style.paddingLeft), right = t.right - parseFloat(style.paddingRight);
    const j = document.getElementById("journey").getBoundingClientRect();
    const m = document.getElementById("mode").getBoundingClientRect();
    const bad = [];
    if (j.left > left + 0.5 || j.right < right - 0.5) {
        bad.push(`${j.left.toFixed(0)}..${j.right.toFixed(0)} of ${left.toFixed(0)}..${right.toFixed(0)}`);
    }
    if (j.top < m.bottom - 0.5) bad.push(`beside the mode, not under it`);
    return bad;
}"""


async def test_the_line_has_the_whole_header_width_under_the_mode_on_every_screen(
    kiosk: Kiosk, browser: Browser
) -> None:
    """A headsign in a half-width column beside the mode took five lines of a phone's
    header (nine for 80 characters without a space), the announcements' room."""
    page = browser.page
    await page.goto(kiosk.url)
    headsign = "Guéret – marché de services, place Bonnyaud"
    run = {"route_id": "L1", "trip_id": "L1-0815", "line": "1", "headsign": headsign}
    await kiosk.command("journey.assign", run, "j4")
    await expect(page.locator("#journey")).to_have_text(f"Ligne 1 → {headsign}")
    narrow = {}
    for screen in SCREENS:
        await page.set_viewport_size(screen.viewport)
        await page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
        if bad := await page.evaluate(ROW):
            narrow[screen.name] = bad
            await browser.shot(f"journey-narrow-{screen.name}")
    assert narrow == {}
