"""The kiosk as a way to starve the node (#12.7): the daemon runs under the unit's
LimitNOFILE, a visitor floods its kiosk (held live streams, half-sent requests, more idle
connections than the node has descriptors, from 16 addresses), and the broker restarts in
the middle: the uplink must reconnect, the screen must still get its state and its live
page, and the log must stay small. `bench.kiosk_flood` does the measuring; it prints JSON."""

import json
from pathlib import Path

from bench.kiosk_flood import measure
from edged.config.services import KioskConfig
from hil.kioskflood import unit_nofile

HEADER_TIMEOUT_S = 3


async def test_the_uplink_reconnects_while_the_kiosk_is_flooded(tmp_path: Path) -> None:
    limit = unit_nofile()
    m = await measure(
        tmp_path,
        hold_s=12.0,
        restart_after_s=4.0,
        kiosk_extra=f"header_timeout_s = {HEADER_TIMEOUT_S}",
    )
    print(json.dumps(m))
    flood = m["flood"]
    kiosk = KioskConfig()
    assert m["daemon_alive"], "the daemon died under the flood"
    assert m["reconnect_s_flooded"] is not None, f"no reconnect during the flood: {m}"
    assert m["daemon_fds_peak"] < limit - 200, f"the kiosk took the node's descriptors: {m}"
    assert flood["page_ok"] > 0 and flood["page_failed"] == 0, f"the screen lost: {m}"
    assert flood["screen_stream"].startswith("HTTP/1.1 200"), f"the screen's live page: {m}"
    visitors_share = kiosk.max_clients - kiosk.max_streams_per_peer
    assert flood["streams"]["answered"] == visitors_share, f"visitors' streams: {m}"
    half = flood["half"]
    assert half["closed"] == half["opened"] > 0, f"half-sent requests held on: {m}"
    assert half["closed_after_s_max"] < HEADER_TIMEOUT_S + 2, f"past the timeout: {m}"
    assert m["log_lines_during_flood"] < 100, f"the log grew: {m}"
