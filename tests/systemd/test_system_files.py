"""The small system files: CAN network, NFC module blacklist, sysctl, config.txt snippet.

No offline checker exists for these, so each is held against the real thing where one is
at hand: the keys systemd-networkd knows (its own table, in its binary), libnfc6's
blacklist, the can driver's buffer size, /proc/sys.
"""

import re
from pathlib import Path

import pytest

from drivers.can.bus import CanBusOptions

SYSTEMD = Path(__file__).parents[2] / "systemd"
NETWORKD = Path("/lib/systemd/systemd-networkd")
LIBNFC_BLACKLIST = Path("/etc/modprobe.d/blacklist-libnfc.conf")


def ini(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {raw!r}"
        current[key.strip()] = value.strip()
    return sections


def conf_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


# -- CAN ------------------------------------------------------------------------------

CAN_NETWORK = SYSTEMD / "network" / "80-can.network"


def test_every_key_of_the_can_network_is_one_networkd_knows() -> None:
    if not NETWORKD.exists():
        pytest.fail(f"{NETWORKD} is missing: `apt-get install systemd`")
    known = set(re.findall(rb"[A-Z][A-Za-z]+\.[A-Z][A-Za-z]+", NETWORKD.read_bytes()))
    for section, keys in ini(CAN_NETWORK).items():
        for key in keys:
            assert f"{section}.{key}".encode() in known, f"[{section}] {key}"


def test_the_can_network_has_a_j1939_bit_rate_listen_only_and_never_blocks_boot() -> None:
    net = ini(CAN_NETWORK)
    assert net["Match"]["Name"] == "can0" == CanBusOptions().channel
    assert net["CAN"]["BitRate"] in {"250000", "500000"}
    assert net["CAN"]["ListenOnly"] == "yes"
    assert net["Link"]["RequiredForOnline"] == "no"
    assert net["CAN"]["RestartSec"] not in {"0", "infinity"}, "bus-off recovery stays on"


def test_the_mcp2515_overlay_line_names_oscillator_and_interrupt() -> None:
    lines = conf_lines(SYSTEMD / "network" / "config.txt.mcp2515")
    assert "dtparam=spi=on" in lines
    overlays = [line for line in lines if line.startswith("dtoverlay=")]
    assert overlays == ["dtoverlay=mcp2515-can0,oscillator=16000000,interrupt=25"]


# -- NFC ------------------------------------------------------------------------------

BLACKLIST = SYSTEMD / "modprobe.d" / "edged-blacklist-nfc.conf"


def blacklisted(path: Path) -> set[str]:
    modules = set()
    for line in conf_lines(path):
        m = re.fullmatch(r"blacklist\s+([a-z0-9_]+)", line)
        assert m, f"{path.name}: not a blacklist line: {line!r}"
        modules.add(m[1])
    return modules


def test_the_blacklist_keeps_every_kernel_nfc_driver_for_pn53x_away() -> None:
    assert {"nfc", "pn533", "pn533_usb", "pn533_i2c", "pn532_uart"} <= blacklisted(BLACKLIST)


def test_the_blacklist_covers_what_libnfc6_blacklists_itself() -> None:
    if not LIBNFC_BLACKLIST.exists():
        pytest.skip("libnfc6 is not installed here (./dev test installs it)")
    assert blacklisted(LIBNFC_BLACKLIST) <= blacklisted(BLACKLIST)


def test_the_blacklist_does_not_take_libnfc6s_file_name() -> None:
    """dpkg owns /etc/modprobe.d/blacklist-libnfc.conf: overwriting it would make every
    libnfc6 upgrade ask about a changed conffile."""
    assert BLACKLIST.name != LIBNFC_BLACKLIST.name


# -- sysctl ---------------------------------------------------------------------------


def sysctl_settings() -> dict[str, str]:
    out = {}
    for line in conf_lines(SYSTEMD / "sysctl.d" / "60-edged.conf"):
        key, sep, value = line.partition("=")
        assert sep, line
        out[key.strip()] = value.strip()
    return out


def test_sysctl_keys_exist_in_this_kernel() -> None:
    for key in sysctl_settings():
        assert Path("/proc/sys", *key.split(".")).exists(), key


def test_rmem_max_lets_the_can_driver_have_its_receive_buffer() -> None:
    wanted = CanBusOptions().receive_buffer_bytes
    assert int(sysctl_settings()["net.core.rmem_max"]) >= wanted
