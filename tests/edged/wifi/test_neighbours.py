"""Which devices are on the hotspot: the radio's stations (`iw`), else the kernel's
resolved neighbours; what a full hotspot trusts before it gives a session's slot away."""

from pathlib import Path

import pytest

from edged.wifi.neighbours import on_hotspot

ARP_HEAD = "IP address       HW type     Flags       HW address            Mask     Device\n"
STATION_DUMP = """\
Station 02:00:00:00:00:0A (on hs0)
\tinactive time:\t120 ms
\trx bytes:\t4242
Station 02:00:00:00:00:0b (on hs0)
\tsignal:  \t-52 dBm
Station 02:00:00:00:00 (on hs0)
Station 02:00:00:00:00:0c; rm -rf / (on hs0)
\tStation 02:00:00:00:00:0d (on hs0)
"""


def radio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A `hs0` that is a radio, and an `iw` on PATH that prints `script`'s output."""
    sys_net = tmp_path / "net"
    (sys_net / "hs0" / "wireless").mkdir(parents=True)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    iw = bin_ / "iw"
    iw.write_text(f"#!/bin/sh\n{script}\n")
    iw.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_))
    return sys_net


def arp(tmp_path: Path, *lines: str) -> Path:
    table = tmp_path / "arp"
    table.write_text(ARP_HEAD + "".join(f"{line}\n" for line in lines))
    return table


async def test_the_radios_stations_are_the_devices_on_the_hotspot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "dump"
    dump.write_text(STATION_DUMP)
    sys_net = radio(tmp_path, monkeypatch, f'[ "$*" = "dev hs0 station dump" ] && /bin/cat {dump}')
    table = arp(tmp_path, "10.42.0.9        0x1         0x2         02:00:00:00:00:99     *   hs0")
    here = await on_hotspot("hs0", table=table, sys_net=sys_net)
    assert here == {"02:00:00:00:00:0a", "02:00:00:00:00:0b"}  # not the neighbour, no junk


async def test_a_radio_iw_cannot_list_is_not_taken_for_an_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys_net = radio(tmp_path, monkeypatch, "echo 'command failed: No such device' >&2; exit 237")
    table = arp(tmp_path, "10.42.0.9        0x1         0x2         02:00:00:00:00:99     *   hs0")
    assert await on_hotspot("hs0", table=table, sys_net=sys_net) == {"02:00:00:00:00:99"}


async def test_without_a_radio_the_resolved_neighbours_on_the_hotspot_are_the_devices(
    tmp_path: Path,
) -> None:
    table = arp(
        tmp_path,
        "10.42.0.9        0x1         0x2         02:00:00:00:00:99     *   hs0",
        "10.42.0.8        0x1         0x0         02:00:00:00:00:98     *   hs0",  # failed
        "10.42.0.7        0x1         0x2         00:00:00:00:00:00     *   hs0",
        "192.168.8.1      0x1         0x2         02:00:00:00:00:97     *   eth0",
        "10.42.0.6        0x1         junk        02:00:00:00:00:96     *   hs0",
        "garbage",
    )
    assert await on_hotspot("hs0", table=table, sys_net=tmp_path) == {"02:00:00:00:00:99"}


async def test_nothing_to_read_is_unknown_not_nobody(tmp_path: Path) -> None:
    assert await on_hotspot("hs0", table=tmp_path / "missing", sys_net=tmp_path) is None
