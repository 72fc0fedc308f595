"""The hotspot service's own wiring: which clock its day is counted on."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from edged.clock import Clock
from edged.config import parse_config
from edged.services.kiosk import KioskService
from edged.services.wifi import WifiService
from edged.wifi.sessions import TODAY_KEY, NftFirewall
from tests.helpers.host import TestHost

CONFIG = """
[node]
fleet = "creuse"
id = "shuttle-07"
profile = "shuttle"

[services.kiosk]
enabled = true
port = 0

[wifi]
enabled = true
ssid = "Navette 07"
country = "FR"
"""


def test_the_sessions_of_the_day_are_counted_on_the_node_s_clock() -> None:
    """A Pi without NTP boots on fake-hwclock's saved time, days behind, and takes the time
    from GPS (`clock` `gps` in every payload): the phones' acceptances of the day were
    counted on the system clock's day, so `health.wifi.sessions_today` was another day's
    count, the one every other daily thing on the node (occupancy's reset, the kiosk's
    services) had already left."""
    gps_now = datetime.now(UTC) + timedelta(days=3)  # the system clock is 3 days behind
    clock = Clock(recheck_s=0, kernel_synced=lambda: False)
    assert clock.discipline(gps_now)
    host = TestHost(clock=clock)
    today = gps_now.astimezone(ZoneInfo("Europe/Paris")).date().isoformat()
    host.state.set(TODAY_KEY, {"day": today, "n": 4})  # four phones earlier today
    config = parse_config(CONFIG)
    screen = KioskService(host, config.services.kiosk)
    hotspot = WifiService(host, config.wifi, screen, screen.config, firewall=NftFirewall())
    assert hotspot.sessions.sessions_today() == 4
