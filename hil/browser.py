"""The browser the kiosk page is driven in, by the e2e tests and `bench.kiosk`: Debian's
Chromium (`apt-get install chromium`), headless, with nothing of its own on the network."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
