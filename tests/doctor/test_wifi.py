"""`edged doctor` on the hotspot: radio, country, uplink, conflicts, tools and firewall.

This machine has no wifi radio: what needs one reads a tree laid out like /sys (the paths
and files the kernel has on a Raspberry Pi), and `iw`'s answers are the text it prints
there. Everything else is real: /sys and /proc of this machine, `nft` in a namespace with
and without the hotspot's table, `edged doctor` as a technician runs it.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from edged.config.wifi import WifiConfig
from edged.doctor.check import Status
from edged.doctor.wifi import (
    Machine,
    ap_mode,
    check_wifi,
    conflicts,
    connection_table,
    country_verdict,
    radio,
    radio_verdict,
    reg_countries,
    rfkill,
    tools_and_firewall,
    uplink,
)
from edged.wifi.layout import Layout
from edged.wifi.render.nft import render_nft, render_timeouts
from tests.doctor.conftest import as_nobody
from tests.helpers.netns import Netns, need_netns
from tests.helpers.nodes import ROOT, write_config

# `iw phy phy0 info` of a Raspberry Pi 4 (brcmfmac), the part that matters
PI4_PHY = (
    "Wiphy phy0\n\twiphy index: 0\n\tmax # scan SSIDs: 10\n\tSupported interface modes:\n"
    + "".join(f"\t\t * {mode}\n" for mode in ("IBSS", "managed", "AP", "P2P-client", "P2P-GO"))
    + "\tBand 1:\n\t\tCapabilities: 0x1062\n"
)
NO_AP_PHY = PI4_PHY.replace("\t\t * AP\n", "")
REG_FR = """global
country FR: DFS-ETSI
	(2400 - 2483 @ 40), (N/A, 20), (N/A)
	(5150 - 5250 @ 80), (N/A, 23), (N/A), NO-OUTDOOR, AUTO-BW

phy#0
country 99: DFS-UNSET
	(2402 - 2482 @ 40), (6, 20), (N/A)
"""
REG_WORLD = "global\ncountry 00: DFS-UNSET\n\t(2402 - 2472 @ 40), (6, 20), (N/A)\n"
ROUTES_HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route(iface: str, dest: str, mask: str, flags: str = "0001") -> str:
    def le(a: str) -> str:
        return bytes(int(x) for x in a.split("."))[::-1].hex().upper()

    return f"{iface}\t{le(dest)}\t00000000\t{flags}\t0\t0\t0\t{le(mask)}\t0\t0\t0\n"


WIFI = WifiConfig(enabled=True, ssid="Navette 07", country="FR", uplinks=["wwan0"])


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    """A Pi's /sys and /proc as far as the checks read them: wlan0 (phy0) and wwan0."""
    net = tmp_path / "sys/class/net"
    (net / "wlan0" / "wireless").mkdir(parents=True)
    (net / "wlan0" / "phy80211").mkdir()
    (net / "wlan0" / "phy80211" / "name").write_text("phy0\n")
    (net / "wwan0").mkdir()
    (net / "eth0").mkdir()
    rf = tmp_path / "sys/class/rfkill/rfkill0"
    rf.mkdir(parents=True)
    for name, value in (("type", "wlan"), ("soft", "0"), ("hard", "0")):
        (rf / name).write_text(value + "\n")
    routes = tmp_path / "route"
    routes.write_text(
        ROUTES_HEAD
        + route("wwan0", "0.0.0.0", "0.0.0.0", "0003")
        + route("wwan0", "100.72.0.0", "255.255.0.0")
    )
    udp = tmp_path / "udp"
    udp.write_text("  sl  local_address rem_address   st\n")
    return Machine(
        sys_net=net, rfkill=tmp_path / "sys/class/rfkill", routes=routes, udp=udp,
        forward=tmp_path / "ip_forward", conntrack_max=tmp_path / "nf_conntrack_max",
    )  # fmt: skip


def statuses(checks: list) -> dict[str, Status]:  # type: ignore[type-arg]
    return {c.name: c.status for c in checks}


# -- the radio --------------------------------------------------------------------------------


async def test_a_missing_radio_fails_and_says_where_to_look() -> None:
    [check] = await radio(WIFI.model_copy(update={"interface": "wlan9"}), Machine())
    assert check.status is Status.FAIL and "no interface wlan9" in check.detail
    assert "interface" in check.advice


async def test_an_interface_that_is_no_radio_fails() -> None:
    [check] = await radio(WIFI.model_copy(update={"interface": "lo"}), Machine())
    assert check.status is Status.FAIL and check.detail == "lo is not a wifi radio"


def test_a_radio_that_can_be_an_access_point_is_ok() -> None:
    assert ap_mode(PI4_PHY) and not ap_mode(NO_AP_PHY)
    assert radio_verdict(WIFI, "phy0", (0, PI4_PHY)).status is Status.OK
    failed = radio_verdict(WIFI, "phy0", (0, NO_AP_PHY))
    assert failed.status is Status.FAIL and "AP mode" in failed.detail


def test_a_radio_iw_cannot_read_is_a_warning_not_a_verdict() -> None:
    check = radio_verdict(WIFI, "phy0", (1, "nl80211 not found.\n"))
    assert check.status is Status.WARN and "nl80211 not found" in check.detail


async def test_a_radio_on_this_machine_without_nl80211_is_not_called_unfit(machine: Machine) -> None:
    [check] = await radio(WIFI, machine)  # the real `iw` here has no nl80211 to ask
    assert check.status is not Status.FAIL


@pytest.mark.parametrize(("key", "says"), [("soft", "soft block"), ("hard", "by a switch")])
def test_a_blocked_radio_fails_with_the_way_to_unblock(machine: Machine, key: str, says: str) -> None:
    (machine.rfkill / "rfkill0" / key).write_text("1\n")
    [check] = rfkill(WIFI, machine)
    assert check.status is Status.FAIL and says in check.detail


def test_an_unblocked_radio_says_nothing(machine: Machine) -> None:
    assert rfkill(WIFI, machine) == []


# -- the country ------------------------------------------------------------------------------


def test_the_country_of_the_config_is_ok() -> None:
    assert reg_countries(REG_FR) == {"global": "FR", "phy#0": "99"}
    assert country_verdict(WIFI, (0, REG_FR)).status is Status.OK


def test_no_country_fails_with_the_command_that_sets_it() -> None:
    check = country_verdict(WIFI, (0, REG_WORLD))
    assert check.status is Status.FAIL and "00" in check.detail
    assert check.advice.startswith("sudo iw reg set FR")


def test_another_country_than_the_configs_fails() -> None:
    check = country_verdict(WIFI.model_copy(update={"country": "BE"}), (0, REG_FR))
    assert check.status is Status.FAIL and "FR, the config says BE" in check.detail


# -- uplink and conflicts --------------------------------------------------------------------


def test_a_default_route_through_the_uplink_is_ok(machine: Machine) -> None:
    [check] = uplink(WIFI, machine)
    assert check.status is Status.OK and check.detail == "riders go out through wwan0"


def test_no_uplink_is_a_warning_that_the_portal_will_say_so(machine: Machine) -> None:
    machine.routes.write_text(ROUTES_HEAD + route("wwan0", "100.72.0.0", "255.255.0.0"))
    [check] = uplink(WIFI, machine)
    assert check.status is Status.WARN and "no internet on board" in check.detail


def test_a_missing_uplink_interface_is_named(machine: Machine) -> None:
    checks = uplink(WIFI.model_copy(update={"uplinks": ["usb0"]}), machine)
    assert any(c.status is Status.WARN and "no interface usb0" in c.detail for c in checks)


def test_the_radio_carrying_the_default_route_is_a_conflict(machine: Machine) -> None:
    machine.routes.write_text(ROUTES_HEAD + route("wlan0", "0.0.0.0", "0.0.0.0", "0003"))
    checks = conflicts(WIFI, machine)
    assert any(c.status is Status.FAIL and "wifi client" in c.detail for c in checks)


def test_a_network_overlapping_the_hotspots_is_a_conflict(machine: Machine) -> None:
    machine.routes.write_text(ROUTES_HEAD + route("eth0", "10.42.0.0", "255.255.0.0"))
    [check] = conflicts(WIFI, machine)
    assert check.status is Status.FAIL and "eth0 already uses 10.42.0.0/16" in check.detail


def test_a_dns_server_on_every_address_is_a_conflict(machine: Machine) -> None:
    machine.udp.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0\n"
        "   1: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   102\n"
    )
    [check] = conflicts(WIFI, machine)
    assert check.status is Status.WARN and "[53]" in check.detail


def test_no_conflict_is_ok(machine: Machine) -> None:
    assert statuses(conflicts(WIFI, machine)) == {"wifi: conflicts": Status.OK}


@pytest.mark.parametrize(
    ("table", "status"), [("4096", Status.OK), ("3000", Status.WARN), (None, Status.SKIP)]
)
def test_the_phones_share_of_the_connection_table_leaves_the_node_half_of_this_machines(
    machine: Machine, table: str | None, status: Status
) -> None:
    # The kernel sizes the table from memory (4096 on a Pi Zero 2 W): a share set for a
    # large Pi would let the phones fill a small one.
    if table is not None:
        machine.conntrack_max.write_text(table + "\n")
    (check,) = connection_table(WIFI, machine)
    assert check.status == status
    if status == Status.WARN:
        assert "max_flows to at most 1500" in check.advice


async def test_a_disabled_hotspot_adds_no_lines(machine: Machine) -> None:
    assert await check_wifi(WifiConfig(), machine=machine) == []


# -- the whole doctor, with and without the firewall -------------------------------------------


def doctor_in(ns: Netns, config: Path) -> dict[str, dict[str, str]]:
    done = ns.run(
        "env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "edged", "doctor", "-c", str(config),
        "--json", "--timeout", "2", check=False, timeout=60,
    )  # fmt: skip
    return {c["name"]: c for c in json.loads(done.stdout)}


def test_doctor_fails_a_hotspot_whose_firewall_is_not_loaded_and_passes_it_once_it_is(
    tmp_path: Path,
) -> None:
    need_netns()
    wifi = '\n[wifi]\nenabled = true\nssid = "Navette 07"\ncountry = "FR"\nbackend = "hostapd"\n'
    config = write_config(tmp_path, 1883, fleet="test", node="a", gps=False, kiosk=True, extra=wifi)
    ns = Netns(f"e18-{os.getpid()}-doc")
    try:
        before = doctor_in(ns, config)
        assert before["wifi: firewall"]["status"] == "fail"
        assert "sudo edged wifi apply" in before["wifi: firewall"]["advice"]
        assert before["wifi: radio"]["status"] == "fail"  # no wlan0 in a fresh namespace
        rules = tmp_path / "hotspot.nft"
        rules.write_text(render_nft(WIFI, source="t"))
        ns.run("nft", "-f", str(rules))
        after = doctor_in(ns, config)
        assert after["wifi: firewall"]["status"] == "ok"
        assert after["wifi: uplink"]["status"] == "warn"  # no route out of the namespace
    finally:
        ns.delete()


def test_doctor_warns_of_a_hotspot_without_its_conntrack_timeouts_and_passes_them_loaded(
    tmp_path: Path,
) -> None:
    # A kernel without conntrack timeouts refuses timeouts.nft and the firewall loads
    # without it: nothing failed, so the operator must be told where it shows.
    need_netns()
    wifi = '\n[wifi]\nenabled = true\nssid = "Navette 07"\ncountry = "FR"\nbackend = "hostapd"\n'
    config = write_config(tmp_path, 1883, fleet="test", node="a", gps=False, kiosk=True, extra=wifi)
    ns = Netns(f"e18-{os.getpid()}-doct")
    try:
        rules = tmp_path / "hotspot.nft"
        rules.write_text(render_nft(WIFI, source="t"))
        ns.run("nft", "-f", str(rules))
        before = doctor_in(ns, config)
        assert before["wifi: conntrack timeouts"]["status"] == "warn"
        assert "CONFIG_NF_CONNTRACK_TIMEOUT" in before["wifi: conntrack timeouts"]["advice"]
        timeouts = tmp_path / "timeouts.nft"
        timeouts.write_text(render_timeouts(WIFI, source="t"))
        ns.run("nft", "-f", str(timeouts))
        after = doctor_in(ns, config)
        assert after["wifi: conntrack timeouts"]["status"] == "ok"
    finally:
        ns.delete()


def test_doctor_as_a_user_does_not_pretend_to_have_read_the_firewall(machine: Machine) -> None:
    def as_user() -> dict[str, str]:
        checks = asyncio.run(tools_and_firewall(WIFI, "hostapd", machine))
        return {c.name: c.status.value for c in checks}

    got = as_nobody(as_user)
    assert got["wifi: firewall"] == "skip"  # never an ok it could not know


def test_doctors_advice_for_missing_conntrack_timeouts_is_a_command_that_loads_them(
    tmp_path: Path,
) -> None:
    # The advice was `sudo edged wifi apply`: with the files already as the config says
    # (a kernel that refused them then, a table deleted since), apply says "nothing to
    # do" and loads nothing. `nft -f` of the file loads it, or says why not.
    need_netns()
    wifi = '\n[wifi]\nenabled = true\nssid = "Navette 07"\ncountry = "FR"\nbackend = "hostapd"\n'
    config = write_config(tmp_path, 1883, fleet="test", node="a", gps=False, kiosk=True, extra=wifi)
    ns = Netns(f"e18-{os.getpid()}-doct")
    try:
        advice = doctor_in(ns, config)["wifi: conntrack timeouts"]["advice"]
    finally:
        ns.delete()
    assert f"sudo nft -f {Layout().timeouts}" in advice
