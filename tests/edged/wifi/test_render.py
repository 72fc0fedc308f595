"""Every file `edged wifi apply` writes, read back by the tool that will use it: hostapd,
dnsmasq, nft and NetworkManager each parse and check it as they will on a node."""

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.config.models import EdgedConfig
from edged.config.wifi import WifiConfig
from edged.wifi.layout import TABLE, TIMEOUTS_TABLE, Layout
from edged.wifi.plan import build_plan
from edged.wifi.render.dnsmasq import render_dnsmasq, render_nm_dnsmasq
from edged.wifi.render.hostapd import render_hostapd
from edged.wifi.render.networkmanager import NotSupported, render_keyfile
from edged.wifi.render.nft import render_nft
from edged.wifi.render.system import render_firewall_unit, render_sysctl
from edged.wifi.validate import (
    check_dnsmasq,
    check_hostapd,
    check_keyfile,
    check_nft,
    parse_keyfile,
)
from tests.edged.wifi.conftest import Make, nmcli
from tests.helpers.netns import Netns, need_netns, veth

PASS = "correct horse battery staple"
SECURED = [
    ("open", None),
    ("wpa2", PASS),
    ("wpa3", PASS),
    ("wpa2-wpa3", PASS),
]


def keyfile(w: WifiConfig, passphrase: str | None) -> str:
    return render_keyfile(w, passphrase, fleet="creuse", node="shuttle-07", source="t")


@pytest.mark.parametrize(("security", "passphrase"), SECURED)
@pytest.mark.parametrize("channel", [6, 13, 36, 48])
def test_hostapd_reads_the_access_point_it_is_given(
    make: Make, security: str, passphrase: str | None, channel: int
) -> None:
    w = make(security=security, passphrase=passphrase, channel=channel).wifi
    verdict = check_hostapd(render_hostapd(w, passphrase, source="t"))
    assert verdict.ok is True, verdict.message


def test_hostapd_refuses_what_it_cannot_use_so_the_check_can_fail(make: Make) -> None:
    w = make(passphrase=PASS).wifi
    bad = render_hostapd(w, PASS, source="t").replace(PASS, "short")
    verdict = check_hostapd(bad)
    assert verdict.ok is False and "passphrase" in verdict.message


def test_hostapd_gets_the_ssid_as_hex_and_the_isolation_and_limits(make: Make) -> None:
    w = make(ssid="Navette 07 – Wi-Fi", max_clients=12).wifi
    text = render_hostapd(w, None, source="t")
    ssid2 = re.search(r"^ssid2=([0-9a-f]+)$", text, re.M)
    assert ssid2 and bytes.fromhex(ssid2.group(1)).decode() == "Navette 07 – Wi-Fi"
    for line in ("ap_isolate=1", "max_num_sta=12", "country_code=FR", "ieee80211d=1", "wpa=0"):
        assert line in text.splitlines()


@pytest.mark.parametrize(("security", "passphrase"), SECURED[:3])
def test_networkmanager_reads_the_connection_back_unchanged(
    make: Make, security: str, passphrase: str | None
) -> None:
    w = make(security=security, passphrase=passphrase, channel=40).wifi
    verdict = check_keyfile(keyfile(w, passphrase), nmcli=nmcli())
    assert verdict.ok is True, verdict.message
    assert verdict.normalised is not None
    got = parse_keyfile(verdict.normalised)
    assert got["wifi"]["mode"] == "ap" and got["wifi"]["ap-isolation"] == "1"
    assert got["wifi"]["band"] == "a" and got["wifi"]["channel"] == "40"
    assert got["ipv4"] == {"address1": "10.42.0.1/24", "method": "shared"}
    assert got["ipv6"]["method"] == "disabled"
    if passphrase:
        assert got["wifi-security"]["psk"] == passphrase
        assert got["wifi-security"]["key-mgmt"] == {"wpa2": "wpa-psk", "wpa3": "sae"}[security]
    else:
        assert "wifi-security" not in got


def test_networkmanager_refuses_what_it_cannot_use_so_the_check_can_fail(make: Make) -> None:
    text = keyfile(make().wifi, None).replace("mode=ap", "mode=apx")
    verdict = check_keyfile(text, nmcli=nmcli())
    assert verdict.ok is False and "mode" in verdict.message


def test_networkmanager_cannot_mix_wpa2_and_wpa3_and_says_what_to_choose(make: Make) -> None:
    w = make(security="wpa2-wpa3", passphrase=PASS).wifi
    with pytest.raises(NotSupported, match='backend = "hostapd"'):
        keyfile(w, PASS)


def ssid_bytes(normalised: str) -> bytes:
    value = parse_keyfile(normalised)["wifi"]["ssid"]
    if re.fullmatch(r"(\d+;)+", value):
        return bytes(int(b) for b in value.split(";") if b)
    # NetworkManager writes an SSID that holds `;` (the keyfile's list separator) as a
    # string with each `;` escaped, `\;`, then GKeyFile-escaped (`ssid=caf\\;e`); its
    # reader undoes both
    return value.replace("\\;", ";").encode()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1, max_size=32))
def test_any_ssid_the_config_takes_reaches_both_backends_byte_for_byte(
    make: Make, ssid: str
) -> None:
    try:
        w = make(ssid=ssid).wifi
    except Exception:
        return  # refused by the config, with its key (test_config)
    assert w.ssid is not None
    verdict = check_keyfile(keyfile(w, None), nmcli=nmcli())
    assert verdict.ok is True and verdict.normalised is not None, verdict.message
    assert ssid_bytes(verdict.normalised) == w.ssid.encode()
    assert check_hostapd(render_hostapd(w, None, source="t")).ok is True


PRINTABLE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="|"),
    min_size=8,
    max_size=63,
).filter(lambda p: p == p.strip(" "))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(PRINTABLE)
def test_any_passphrase_the_config_takes_reaches_both_backends_unchanged(
    make: Make, passphrase: str
) -> None:
    w = make(passphrase=passphrase, security="wpa3").wifi
    verdict = check_keyfile(keyfile(w, passphrase), nmcli=nmcli())
    assert verdict.ok is True and verdict.normalised is not None, verdict.message
    assert parse_keyfile(verdict.normalised)["wifi-security"]["psk"] == passphrase
    assert check_hostapd(render_hostapd(w, passphrase, source="t")).ok is True


@pytest.mark.parametrize("uplinks", [[], ["wwan0"], ["wwan0", "eth0"]])
@pytest.mark.parametrize(("client", "total"), [(0.5, 0.5), (2, 10), (100, 1000)])
def test_the_kernel_takes_the_firewall(
    make: Make, scratch_netns: str, uplinks: list[str], client: float, total: float
) -> None:
    w = make(uplinks=uplinks, client_mbit=client, total_mbit=total).wifi
    verdict = check_nft(render_nft(w, source="t"), netns=scratch_netns)
    assert verdict.ok is True, verdict.message


def test_the_kernel_refuses_a_broken_ruleset_so_the_check_can_fail(
    make: Make, scratch_netns: str
) -> None:
    text = render_nft(make().wifi, source="t").replace("masquerade", "masquerade sideways")
    assert check_nft(text, netns=scratch_netns).ok is False


def test_dnsmasq_takes_the_hotspots_dhcp_and_dns(make: Make, tmp_path: Path) -> None:
    text = render_dnsmasq(make().wifi, Layout().under(tmp_path), source="t")
    assert check_dnsmasq(text).ok is True
    assert 'dhcp-option=114,"http://10.42.0.1/api/captive"' in text.splitlines()
    for line in ("leasefile-ro", "quiet-dhcp", "cache-size=0", "no-hosts"):
        assert line in text.splitlines()  # nothing kept, nothing logged
    assert "log-queries" not in text


def test_dnsmasq_takes_the_part_added_to_networkmanagers(make: Make) -> None:
    text = render_nm_dnsmasq(
        make(extra='\n[wifi.portal]\nname = "portail.navette.fr"\n').wifi, source="t"
    )
    assert check_dnsmasq(text, networkmanager=True).ok is True
    assert "address=/portail.navette.fr/10.42.0.1" in text.splitlines()


def test_dnsmasq_refuses_an_unknown_option_so_the_check_can_fail() -> None:
    assert check_dnsmasq("no-such-option-here\n").ok is False


@pytest.mark.parametrize("backend", ["networkmanager", "hostapd"])
def test_every_file_of_a_backend_passes_its_tool(
    make: Make, backend: str, scratch_netns: str
) -> None:
    config: EdgedConfig = make(passphrase=PASS, security="wpa2")
    plan = build_plan(config, backend)  # type: ignore[arg-type]
    checked = []
    for m in plan.files:
        if m.content is None or m.tool is None:
            continue
        verdict = {
            "nft": lambda t: check_nft(t, netns=scratch_netns),
            "nft-optional": lambda t: check_nft(t, netns=scratch_netns),
            "dnsmasq": check_dnsmasq,
            "nm-dnsmasq": lambda t: check_dnsmasq(t, networkmanager=True),
            "hostapd": check_hostapd,
            "nmcli": lambda t: check_keyfile(t, nmcli=nmcli()),
        }[m.tool](m.content)
        assert verdict.ok is True, (m.path, verdict.message)
        checked.append(m.tool)
    assert sorted(checked) == sorted(
        ["nft", "nft-optional", "nmcli", "nm-dnsmasq"]
        if backend == "networkmanager"
        else ["nft", "nft-optional", "hostapd", "dnsmasq"]
    )


@pytest.mark.parametrize("ssid", [";", "caf;e", "a;b;", "\\;", ";;"])
def test_an_ssid_with_a_semicolon_reaches_networkmanager_byte_for_byte(
    make: Make, ssid: str
) -> None:
    """NetworkManager writes `;` in an SSID escaped (the keyfile's list separator): what it
    wrote must still read back as what was meant (hypothesis found ";")."""
    w = make(ssid=ssid).wifi
    assert w.ssid is not None
    verdict = check_keyfile(keyfile(w, None), nmcli=nmcli())
    assert verdict.ok is True and verdict.normalised is not None, verdict.message
    assert ssid_bytes(verdict.normalised) == w.ssid.encode()


def test_the_sysctls_hold_for_a_radio_whose_name_has_a_dot(make: Make, tmp_path: Path) -> None:
    # `interface = "wlan0.10"` is a valid name (IFNAMSIZ, no slash); in sysctl's dotted
    # form `net.ipv4.conf.wlan0.10.rp_filter` its dot is a separator: `sysctl -p` (the
    # apply's step) failed on it, and systemd-sysctl at boot skipped it ('-'), leaving the
    # hotspot with IPv6 on and no strict source check.
    need_netns()
    wifi = make(interface="hs0.10").wifi
    conf = tmp_path / "90-edged-hotspot.conf"
    conf.write_text(render_sysctl(wifi, forward=True, source="t"))
    node, other = Netns(f"e18-{os.getpid()}-sysn"), Netns(f"e18-{os.getpid()}-syso")
    try:
        veth(node, "hs0.10", other, "eth0")
        node.run("sysctl", "-q", "-p", str(conf))
        read = {
            key: node.run("cat", f"/proc/sys/net/{key}").stdout.strip()
            for key in ("ipv4/conf/hs0.10/rp_filter", "ipv6/conf/hs0.10/disable_ipv6")
        }
        assert read == {"ipv4/conf/hs0.10/rp_filter": "1", "ipv6/conf/hs0.10/disable_ipv6": "1"}
    finally:
        node.delete()
        other.delete()


def test_the_firewall_unit_loads_the_firewall_even_when_the_kernel_refuses_the_timeouts(
    make: Make, tmp_path: Path
) -> None:
    # The conntrack timeouts need CONFIG_NF_CONNTRACK_TIMEOUT, which a Raspberry Pi OS
    # kernel may lack: their refusal must leave the firewall loaded and the unit up (the
    # radio's unit requires it). systemd's part played: each ExecStart in order in a
    # namespace of its own, a failure stopping the unit unless its line starts with '-'.
    need_netns()
    wifi = make(interface="hs0").wifi
    layout = Layout().under(tmp_path / "etc")
    layout.dir.mkdir(parents=True)
    layout.nft.write_text(render_nft(wifi, source="t"))
    # what such a kernel answers: the timeout objects do not exist for it
    layout.timeouts.write_text(
        f'table inet {TIMEOUTS_TABLE} {{ chain c {{ ct timeout set "absent" }} }}\n'
    )
    unit = render_firewall_unit(wifi, layout, source="t")
    commands = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")
    ]
    ns = Netns(f"e18-{os.getpid()}-unit")
    try:
        for command in commands:
            tolerated = command.startswith("-")
            argv = command.lstrip("-").split()
            if "nft" not in argv[0]:
                continue  # rfkill, iw: the radio, not here
            done = ns.run(*argv, check=False)
            if "timeouts" in command:
                assert done.returncode != 0  # refused, as on such a kernel
            assert done.returncode == 0 or tolerated, (command, done.stderr)
        listed = ns.run("nft", "list", "tables").stdout
    finally:
        ns.delete()
    assert f"table inet {TABLE}" in listed and TIMEOUTS_TABLE not in listed


def test_the_phones_share_of_the_connection_table_is_the_configs(
    make: Make, scratch_netns: str
) -> None:
    # A Pi with more memory than a Pi Zero 2 W gives its riders more of its larger table.
    text = render_nft(make(max_flows=65536).wifi, source="t")
    assert text.count("add @phones { iifname ct count over 65536 }") == 2  # to it, through it
    assert check_nft(text, netns=scratch_netns).ok is True
