"""The kiosk page shows the line of the run dispatch assigned (`journey.assign`), as text."""

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import Browser, Kiosk

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
