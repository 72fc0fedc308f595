"""The kiosk screen's Chromium policy (systemd/chromium/edged-kiosk.json, as install.sh
writes it for the node's port) in the real Chromium, against the real kiosk page.

Chromium reads its policies from /etc/chromium/policies/managed, which a test must not
write: each Chromium here runs in its own mount namespace (`unshare --mount`, root only)
where a copy of /etc/chromium holding the policy is bind-mounted over /etc/chromium, seen
by that process and its children alone. Headless Chromium applies the managed policies
(chrome://policy lists them, each "OK").

The policy forbids developer tools, and the DevTools protocol with them: a page cannot be
attached to, so the tests could not play one. One Chromium runs the policy as shipped and
checks that; the other runs it without `DeveloperToolsAvailability` and with chrome://policy
allowed, to read it, and plays the visitor.
"""

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Error, Page, async_playwright

from hil.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.e2e.conftest import Kiosk
from tests.helpers.broker import free_port
from tests.helpers.mountns import need_private_mounts, private_mount
from tests.helpers.nodes import ROOT
from tools.kiosk_policy import kiosk_policy

pytestmark = pytest.mark.asyncio(loop_scope="module")

ETC = Path("/etc/chromium")
TEMPLATE = ROOT / "systemd" / "chromium" / "edged-kiosk.json"
BLOCKED = "net::ERR_BLOCKED_BY_ADMINISTRATOR"
ON_BLOCK_PAGE = "location.href === 'chrome-error://chromewebdata/'"
"""Where a blocked navigation ends (and a page that failed to load: BLOCKED tells them apart)."""

need_private_mounts(ETC)  # Debian's chromium package, root, the right to mount


def shipped_policy(kiosk: Kiosk) -> dict[str, Any]:
    """The policy install.sh writes for a config whose kiosk listens where this one does."""
    kiosk_table = {"enabled": True, "host": kiosk.server.config.host, "port": kiosk.server.port}
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    return kiosk_policy(template, {"services": {"kiosk": kiosk_table}})


def locked_chromium(directory: Path, policy: dict[str, Any]) -> Path:
    """A program that runs Chromium with `policy` as its only managed policy: /etc/chromium
    (without any policies of this machine) copied, the policy added, mounted over it."""
    etc = directory / "etc-chromium"
    shutil.copytree(ETC, etc, symlinks=True, ignore=shutil.ignore_patterns("policies"))
    (etc / "policies" / "managed").mkdir(parents=True)
    (etc / "policies" / "managed" / "edged-kiosk.json").write_text(json.dumps(policy))
    program = directory / "chromium"
    program.write_text(
        f'#!/bin/sh\nexec {shlex.join([*private_mount(ETC), str(etc), str(CHROMIUM)])} "$@"\n'
    )
    program.chmod(0o755)
    return program


@pytest.fixture(scope="module")
def playing_policy(shared_kiosk: Kiosk) -> dict[str, Any]:
    """The shipped policy but the developer tools the tests drive Chromium with, and
    chrome://policy allowed so that its verdict on each policy can be read."""
    policy = shipped_policy(shared_kiosk)
    del policy["DeveloperToolsAvailability"]
    policy["URLAllowlist"] = [*policy["URLAllowlist"], "chrome://policy"]
    return policy


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def screen(
    playing_policy: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BrowserContext]:
    """The screen's Chromium: its own profile (not a context Playwright isolates), so
    chrome:// pages are what they are on the screen."""
    directory = tmp_path_factory.mktemp("screen")
    program = locked_chromium(directory, playing_policy)
    async with async_playwright() as p:
        # HOME: a download the policy let through would land there, not in ~/Downloads
        context = await p.chromium.launch_persistent_context(
            directory / "profile",
            executable_path=str(program),
            headless=True,
            args=CHROMIUM_FLAGS,
            env={**os.environ, "HOME": str(directory)},
        )
        try:
            yield context
        finally:
            await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(screen: BrowserContext) -> AsyncIterator[Page]:
    page = await screen.new_page()
    try:
        yield page
    finally:
        await page.close()


POLICY_ROWS = """() => {
    const rows = [];
    const walk = (node) => {
        for (const child of (node.shadowRoot || node).querySelectorAll('*')) {
            if (child.tagName === 'POLICY-ROW') {
                const name = child.shadowRoot.querySelector('.name');
                const status = child.shadowRoot.querySelector('.messages');
                if (name && status) rows.push([name.textContent.trim(), status.textContent.trim()]);
            } else if (child.shadowRoot) {
                walk(child);
            }
        }
    };
    walk(document);
    return rows.some(([name]) => name === 'URLBlocklist') ? rows : null;
}"""
"""chrome://policy's table, once it holds the policies set: [name, status] rows."""


async def chrome_policy_statuses(page: Page) -> dict[str, str]:
    """chrome://policy's verdict on each policy set: "OK", "Error" (an unknown name, a
    value of the wrong type), "Deprecated"..."""
    await page.goto("chrome://policy")
    rows = await page.wait_for_function(POLICY_ROWS)
    return dict(await rows.json_value())


async def test_a_root_that_may_not_mount_skips_these_tests() -> None:
    """A skip, not an error in every test: a container's root may lack CAP_SYS_ADMIN."""
    without_mounts = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"]
    check = (
        "from pathlib import Path\n"
        "from tests.helpers.mountns import need_private_mounts\n"
        f"need_private_mounts(Path({str(ETC)!r}))\n"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [*without_mounts, sys.executable, "-c", check],
        capture_output=True, text=True, cwd=ROOT, timeout=10,
    )  # fmt: skip
    assert "Skipped: root here may not mount in a namespace of its own" in done.stderr, done.stderr


async def test_chromium_knows_and_accepts_every_policy_of_the_kiosk(
    page: Page, playing_policy: dict[str, Any]
) -> None:
    statuses = await chrome_policy_statuses(page)
    assert {name: statuses.get(name) for name in playing_policy} == dict.fromkeys(
        playing_policy, "OK"
    )


async def test_the_kiosk_page_at_the_allowed_address_loads(page: Page, shared_kiosk: Kiosk) -> None:
    response = await page.goto(shared_kiosk.url)
    assert response is not None and response.ok
    assert await page.evaluate("location.href") == shared_kiosk.url


@pytest.mark.parametrize(
    "address",
    [
        "file:///etc/passwd",
        "chrome://settings/",
        "chrome://flags/",  # experiments that outlive a restart
        "chrome://history/",
        # schemes '*' alone lets through: the PDF viewer's page, the new tab page's frames
        "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/index.html",
        "chrome-search://most-visited/title.html",
        "http://127.0.0.1:{other}/",
        "http://localhost:{port}/",  # the same page under another name
        "view-source:http://127.0.0.1:{port}/",
        "data:text/html,<p>hello",
    ],
)
async def test_every_other_address_ends_on_the_administrators_block_page(
    page: Page, shared_kiosk: Kiosk, address: str
) -> None:
    url = address.format(port=shared_kiosk.server.port, other=free_port())
    with pytest.raises(Error, match=BLOCKED):
        await page.goto(url)
    await page.wait_for_function(ON_BLOCK_PAGE)


async def test_a_download_from_the_page_is_refused(
    screen: BrowserContext, page: Page, shared_kiosk: Kiosk
) -> None:
    """A file the page could make (a script injected, a link dropped on it) is not saved.
    Chromium decides as on the screen: Playwright's own download handling, which saves
    whatever the policy says, is turned off for this browser."""
    await page.goto(shared_kiosk.url)
    cdp = await screen.new_cdp_session(page)
    await cdp.send("Browser.setDownloadBehavior", {"behavior": "default", "eventsEnabled": True})
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def progress(event: dict[str, Any]) -> None:
        if event["state"] != "inProgress" and not ended.done():
            ended.set_result(event["state"])

    cdp.on("Browser.downloadProgress", progress)
    await page.evaluate(
        """() => {
            const a = document.createElement('a');
            a.href = URL.createObjectURL(new Blob(['x'], {type: 'text/plain'}));
            a.download = 'x.txt';
            document.body.append(a);
            a.click();
        }"""
    )
    assert await asyncio.wait_for(ended, 5) == "canceled"


async def test_a_new_window_shows_nothing_but_the_kiosk_page(
    screen: BrowserContext, page: Page, shared_kiosk: Kiosk
) -> None:
    """Ctrl+N and Ctrl+T cannot be stopped: the window they open (the new tab page) is
    blocked, and so is any address typed into it but the kiosk's."""
    cdp = await screen.new_cdp_session(page)
    async with screen.expect_page() as opened:
        await cdp.send("Target.createTarget", {"url": "chrome://newtab/"})
    window = await opened.value
    await window.wait_for_function(ON_BLOCK_PAGE)
    with pytest.raises(Error, match=BLOCKED):
        await window.goto("file:///etc/passwd")
    await window.wait_for_function(ON_BLOCK_PAGE)
    response = await window.goto(shared_kiosk.url)
    assert response is not None and response.ok
    await window.close()


async def test_the_shipped_policy_lets_no_developer_tools_inspect_the_page(
    shared_kiosk: Kiosk, tmp_path: Path
) -> None:
    """F12 and Ctrl+Shift+I as the DevTools protocol: a page cannot be attached to."""
    program = locked_chromium(tmp_path, shipped_policy(shared_kiosk))
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(program), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            cdp = await browser.new_browser_cdp_session()
            target = await cdp.send("Target.createTarget", {"url": shared_kiosk.url})
            with pytest.raises(Error, match="Not allowed"):
                await cdp.send(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
                )
        finally:
            await browser.close()


async def test_a_host_names_policy_allows_that_host_and_none_of_its_subdomains(
    shared_kiosk: Kiosk, tmp_path: Path
) -> None:
    """A page under a host name (a screen on the venue's network): whoever answers for a
    subdomain of it (a visitor's phone named so on the network, a DNS reply) is blocked.
    Chromium resolves every name to the kiosk's address here; the kiosk's server itself
    refuses a Host it does not serve, so "reached" is a response of any status."""
    port = shared_kiosk.server.port
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    policy = kiosk_policy(template, {"services": {"kiosk": {"host": "kiosk.test", "port": port}}})
    del policy["DeveloperToolsAvailability"]  # Playwright drives it through them
    program = locked_chromium(tmp_path, policy)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(program),
            headless=True,
            args=[
                *CHROMIUM_FLAGS,
                f"--host-resolver-rules=MAP * {shared_kiosk.server.config.host}",
            ],
        )
        try:
            page = await browser.new_page()
            assert await page.goto(f"http://kiosk.test:{port}/") is not None
            for name in ("evil.kiosk.test", "a.b.kiosk.test"):
                with pytest.raises(Error, match=BLOCKED):
                    await page.goto(f"http://{name}:{port}/")
        finally:
            await browser.close()
