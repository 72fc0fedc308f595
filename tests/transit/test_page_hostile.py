"""Fault hunt on the fleet page: one node's payload must not blind dispatch to the others
(DESIGN.md rule 7). The real page in headless Chromium, the real feed service and server."""

import json

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright, expect

from edged.transit.server import FeedServer
from edged.transit.service import FeedService
from hil.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.transit.support import NOW, Clock, feed, msg, put, vehicle

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium here")


def panic(raised_at: int, ts_ms: int | None = None, alarm_id: str = "a-1") -> bytes:
    body = msg(kind="panic", active=True, reason="panic button pressed",
               details={"alarm_id": alarm_id, "raised_at": raised_at})
    if ts_ms is None:
        return body
    return json.dumps({**json.loads(body), "ts": ts_ms}).encode()


@pytest.mark.parametrize("when", [2**62, 9_000_000_000_000_000])
async def test_an_alarm_time_no_browser_can_show_does_not_freeze_the_page(when: int) -> None:
    """`raised_at` past JavaScript's last date (8.64e15 ms) made `Intl.DateTimeFormat` throw
    in every render: the list and the map froze, and another vehicle's real panic sorted
    after it was never shown."""
    service = feed_clocked()
    vehicle(service, "aaa-evil")
    vehicle(service, "zzz-real")
    put(service, "aaa-evil", "alarm/panic", panic(when, ts_ms=when))
    put(service, "zzz-real", "alarm/panic", panic(int(NOW * 1000)))
    server = TestServer(FeedServer(service).app)
    await server.start_server()
    errors: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = await browser.new_page(locale="fr-FR", timezone_id="Europe/Paris")
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(str(server.make_url("/")))
                rows = page.locator("#rows tr")
                await expect(rows).to_have_count(2, timeout=10_000)
                real = page.locator('#rows tr[data-key="creuse/zzz-real"]')
                await expect(real.locator(".chip[data-kind=panic]")).to_contain_text("PANIQUE")
                await expect(page.locator("#panic-list li")).to_have_count(2)
                await expect(page.locator("#map g.vehicle")).to_have_count(2)
            finally:
                await browser.close()
    finally:
        await server.close()
    assert errors == []


async def test_the_ack_command_shown_is_one_a_dispatcher_can_paste_into_a_shell_safely() -> None:
    """The banner shows `edgectl cmd … alarm.ack` with each alarm's id, for a dispatcher to
    paste. The id is what the node published: one that would end the quoting and run
    something else in the dispatcher's shell gets no command shown, the others do."""
    service = feed_clocked()
    vehicle(service, "aaa-evil")
    vehicle(service, "zzz-real")
    evil = "x'; touch /tmp/pwned; echo '"
    put(service, "aaa-evil", "alarm/panic", panic(int(NOW * 1000), alarm_id=evil))
    put(service, "zzz-real", "alarm/panic", panic(int(NOW * 1000), alarm_id="1765000000000-ab12"))
    server = TestServer(FeedServer(service).app)
    await server.start_server()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = await browser.new_page(locale="fr-FR", timezone_id="Europe/Paris")
                await page.goto(str(server.make_url("/")))
                items = page.locator("#panic-list li")
                await expect(items).to_have_count(2, timeout=10_000)
                commands = page.locator("#panic-list code.panic-ack")
                await expect(commands).to_have_count(1)
                await expect(commands).to_have_text(
                    """edgectl cmd creuse/zzz-real alarm.ack '{"alarm_id":"1765000000000-ab12"}'"""
                )
                assert "touch" not in await page.locator("#panic-list").inner_text()
            finally:
                await browser.close()
    finally:
        await server.close()


def feed_clocked() -> FeedService:
    service = feed(Clock(NOW), schedule=False)
    service.status.connected = lambda: True
    return service
