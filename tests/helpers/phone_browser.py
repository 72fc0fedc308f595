"""A rider's phone browser on the hotspot: `python -m tests.helpers.phone_browser OUT_DIR`,
run inside the phone's namespace (`ip netns exec`, so its resolver is the hotspot's).

Headless Chromium with a phone's viewport opens what Android's sign-in page opens (the
connectivity check URL), follows where the hotspot sends it, and does what a rider does:
reads, presses the mediator button, accepts the terms, switches to English. Screenshots
go to OUT_DIR; what it saw is printed as JSON.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hil.browser import CHROMIUM, CHROMIUM_FLAGS

PHONE = {"width": 390, "height": 844}
SMALL = {"width": 320, "height": 640}
ANNOUNCE_CUE = "announce now"
ANDROID_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)


async def page_facts(page: Any) -> dict[str, Any]:
    return dict(
        await page.evaluate(
            """() => ({
                lang: document.documentElement.lang,
                scrolls: document.documentElement.scrollHeight > window.innerHeight + 1,
                status: document.getElementById('portal-status').textContent,
                state: document.getElementById('portal-status').dataset.state,
                accept_hidden: document.getElementById('portal-accept').hidden,
                name: document.getElementById('node-name').textContent,
                buttons: [...document.querySelectorAll('.action:not([hidden]) .press')]
                    .map(b => b.textContent),
                summary: document.querySelector('#portal-terms summary').textContent,
                stops: [...document.querySelectorAll('#stops li')].map(li => li.textContent),
                services: [...document.querySelectorAll('#services li .provider')]
                    .map(li => li.textContent),
            })"""
        )
    )


async def phone_page(browser: Any, viewport: dict[str, int], locale: str) -> tuple[Any, Any]:
    """A fresh phone (context) and its page."""
    ctx = await browser.new_context(
        viewport=viewport, is_mobile=True, has_touch=True, device_scale_factor=2,
        locale=locale, timezone_id="Europe/Paris", user_agent=ANDROID_UA,
    )  # fmt: skip
    return ctx, await ctx.new_page()


async def main(out: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Any] = {"errors": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            ctx, page = await phone_page(browser, PHONE, "fr-FR")
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on(
                "console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None
            )
            await page.goto("http://connectivitycheck.gstatic.com/generate_204")
            seen["landed"] = page.url
            await page.wait_for_function(
                "() => document.getElementById('node-name').textContent === 'Navette 07' &&"
                " !document.getElementById('portal-accept').hidden"
            )
            await page.wait_for_function("() => document.querySelectorAll('#stops li').length > 0")
            seen["before"] = await page_facts(page)
            await page.screenshot(path=str(out / "portal-fr.png"))
            # dispatch announces something now: the open page shows it without a reload
            print(ANNOUNCE_CUE, flush=True)
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#messages li')]"
                ".some(li => li.textContent.includes('Felletin'))",
                timeout=15000,
            )
            seen["announced"] = await page.text_content("#messages")

            await page.tap('.press[data-kind="mediator"]')
            await page.wait_for_function(
                "() => !['', 'saving'].includes(document.getElementById('status-mediator')"
                ".dataset.status)"
            )
            seen["mediator"] = await page.text_content("#status-mediator")
            seen["mediator_status"] = await page.get_attribute("#status-mediator", "data-status")

            await page.evaluate("() => { window.beforeAccepting = true; }")
            await page.tap("#portal-accept")
            await page.wait_for_selector('#portal-status[data-state="online"]')
            # a sign-in window (Android's, iOS's) checks the network again on a page load
            seen["loaded_again"] = await page.evaluate("() => window.beforeAccepting !== true")
            seen["after"] = await page_facts(page)
            await page.screenshot(path=str(out / "portal-accepted-fr.png"))

            await page.tap("#lang")
            await page.wait_for_function("() => document.documentElement.lang === 'en'")
            seen["english"] = await page_facts(page)
            await page.screenshot(path=str(out / "portal-accepted-en.png"))
            await ctx.close()

            ctx, page = await phone_page(browser, SMALL, "en-GB")
            await page.goto("http://10.42.0.1/")  # accepted now: its checks go out
            await page.wait_for_function(
                "() => document.getElementById('node-name').textContent === 'Navette 07' &&"
                " document.documentElement.lang === 'en'"
            )
            await page.click("#portal-terms summary")
            seen["small_english"] = await page_facts(page)
            await page.screenshot(path=str(out / "portal-en-320.png"))
            await ctx.close()
        finally:
            await browser.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
