"""Sessions of phones that accepted the terms, in the kernel's set (nft in a namespace of
the test's own) and in the portal's table: on time, renewable, limited, restored."""

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.counters import Counters
from edged.wifi.render.nft import render_nft
from edged.wifi.sessions import FirewallError, NftFirewall, PortalFull, Sessions, normal_mac
from tests.edged.wifi.conftest import Make
from tests.helpers.netns import Netns, need_netns

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
IP_A, IP_B, IP_C = (ipaddress.IPv4Address(f"10.42.0.{n}") for n in (10, 11, 12))


@pytest.fixture
def netns(make: Make, tmp_path: Path) -> Iterator[Netns]:
    need_netns()
    ns = Netns(f"e18-{os.getpid()}-sess")
    rules = tmp_path / "hotspot.nft"
    rules.write_text(render_nft(make(session_min=5).wifi, source="t"))
    ns.run("nft", "-f", str(rules))
    ns.rules = rules  # type: ignore[attr-defined]
    yield ns
    ns.delete()


@pytest.fixture
def firewall(netns: Netns) -> NftFirewall:
    return NftFirewall(prefix=netns.prefix)


class State(dict[str, Any]):
    def get_state(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        self[key] = json.loads(json.dumps(value))  # as the outbox keeps it


def sessions(firewall: NftFirewall, state: State | None = None, **kw: Any) -> Sessions:
    state = State() if state is None else state
    kw.setdefault("session_s", 300)
    kw.setdefault("max_sessions", 2)
    return Sessions(
        firewall, counters=Counters(), get_state=state.get_state, set_state=state.set_state, **kw
    )


async def test_a_phone_let_through_is_in_the_set_with_the_session_as_timeout(
    firewall: NftFirewall,
) -> None:
    await firewall.allow(A, IP_A, 120)
    [(mac, ip, left)] = await firewall.sessions()
    assert (mac, ip) == (A, IP_A) and 115 <= left <= 120


async def test_letting_a_phone_through_again_starts_its_time_again(firewall: NftFirewall) -> None:
    await firewall.allow(A, IP_A, 3)
    await asyncio.sleep(1.2)
    [(_, _, before)] = await firewall.sessions()
    await firewall.allow(A, IP_A, 3)
    [(_, _, after)] = await firewall.sessions()
    assert before <= 2 and after > before


async def test_the_kernel_ends_a_session_on_time(firewall: NftFirewall) -> None:
    await firewall.allow(A, IP_A, 1)
    await asyncio.sleep(1.6)
    assert await firewall.sessions() == []


@pytest.mark.parametrize(
    "mac", ["02:00:00:00:00:0a } ; flush ruleset ; {", "02:00:00:00:00", "zz:00:00:00:00:0a", ""]
)
async def test_something_that_is_not_a_mac_never_reaches_nft(
    firewall: NftFirewall, mac: str
) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        await firewall.allow(mac, IP_A, 60)
    assert await firewall.sessions() == []


async def test_a_missing_firewall_is_an_error_that_says_what_to_do(netns: Netns) -> None:
    netns.run("nft", "delete", "table", "inet", "edged_hotspot")
    with pytest.raises(FirewallError, match="edged wifi apply"):
        await NftFirewall(prefix=netns.prefix).allow(A, IP_A, 60)


async def test_accepting_counts_a_session_once_and_renewing_does_not(
    firewall: NftFirewall,
) -> None:
    state = State()
    s = sessions(firewall, state)
    assert await s.accept(A, IP_A) == 300
    await s.accept(A, IP_A)
    assert s.sessions_today() == 1 and s.active() == 1
    assert state["wifi.sessions_today"]["n"] == 1
    assert 0 < (s.left(A, IP_A) or 0) <= 300


async def test_the_same_address_with_another_mac_has_no_session(firewall: NftFirewall) -> None:
    s = sessions(firewall)
    await s.accept(A, IP_A)
    assert s.left(B, IP_A) is None and s.left(A, IP_B) is None and s.left(None, IP_A) is None


async def test_a_full_hotspot_refuses_a_new_phone_but_renews_one_it_has(
    firewall: NftFirewall,
) -> None:
    s = sessions(firewall, max_sessions=2)
    await s.accept(A, IP_A)
    await s.accept(B, IP_B)
    with pytest.raises(PortalFull, match="2 phones online"):
        await s.accept(C, IP_C)
    await s.accept(A, IP_A)
    assert {(m, ip) for m, ip, _ in await firewall.sessions()} == {(A, IP_A), (B, IP_B)}


async def test_a_restarted_daemon_takes_the_sessions_the_kernel_still_has(
    firewall: NftFirewall,
) -> None:
    await sessions(firewall).accept(A, IP_A)
    again = sessions(firewall)
    assert again.left(A, IP_A) is None
    await again.resync()
    assert 0 < (again.left(A, IP_A) or 0) <= 300


async def test_a_reloaded_firewall_gets_its_sessions_back(
    netns: Netns, firewall: NftFirewall
) -> None:
    s = sessions(firewall)
    await s.accept(A, IP_A)
    netns.run("nft", "-f", str(netns.rules))  # type: ignore[attr-defined]
    assert await firewall.sessions() == []  # `edged wifi apply` replaced the table
    await s.resync()
    assert [(m, ip) for m, ip, _ in await firewall.sessions()] == [(A, IP_A)]


async def test_the_count_of_the_day_starts_again_at_local_midnight(firewall: NftFirewall) -> None:
    now = [1_800_000_000.0]  # 2027-01-15 08:00 UTC
    state = State()
    s = sessions(firewall, state, wall=lambda: now[0], timezone="Europe/Paris")
    await s.accept(A, IP_A)
    assert s.sessions_today() == 1
    restarted = sessions(firewall, state, wall=lambda: now[0], timezone="Europe/Paris")
    assert restarted.sessions_today() == 1  # kept across a restart the same day
    now[0] += 16 * 3600  # past midnight in Paris
    assert s.sessions_today() == 0


def test_macs_are_kept_in_one_form() -> None:
    assert normal_mac(" 02:AB:cd:00:00:0A ") == "02:ab:cd:00:00:0a"


async def test_nft_lets_a_phone_through_under_the_units_seccomp_filters(netns: Netns) -> None:
    """The daemon runs nft as edged.service runs it (its system-call filter and socket
    families, tests/systemd/sandbox.py); the capability comes from the drop-in `edged wifi
    apply` writes."""
    import shutil
    import sys

    from tests.helpers.nodes import ROOT

    nft = shutil.which("nft") or "/usr/sbin/nft"
    sandbox = [
        sys.executable,
        str(ROOT / "tests/systemd/sandbox.py"),
        str(ROOT / "systemd/edged.service"),
        "--",
    ]
    firewall = NftFirewall(nft=nft, prefix=[*netns.prefix, *sandbox])
    await firewall.allow(A, IP_A, 60)
    assert [(m, ip) for m, ip, _ in await firewall.sessions()] == [(A, IP_A)]


# -- one session per device ------------------------------------------------------------------


async def set_of(firewall: NftFirewall) -> set[tuple[str, ipaddress.IPv4Address]]:
    return {(m, ip) for m, ip, _ in await firewall.sessions()}


async def test_accepting_from_another_address_moves_the_session_there(
    firewall: NftFirewall,
) -> None:
    s = sessions(firewall)
    await s.accept(A, IP_A)
    await s.accept(A, IP_B)
    assert await set_of(firewall) == {(A, IP_B)}  # the old address lost its access
    assert s.left(A, IP_A) is None and 0 < (s.left(A, IP_B) or 0) <= 300
    assert s.active() == 1 and s.sessions_today() == 1
    assert s.counters["wifi.sessions.moved"] == 1


async def test_a_device_at_many_addresses_holds_one_slot(firewall: NftFirewall) -> None:
    s = sessions(firewall, max_sessions=2)
    for ip in (IP_A, IP_B, IP_C, IP_A):
        await s.accept(A, ip)
    await s.accept(B, IP_B)  # B's address was A's a moment ago: A's pair there is gone
    assert await set_of(firewall) == {(A, IP_A), (B, IP_B)}


async def test_a_full_hotspot_gives_a_new_phone_the_slot_of_a_device_that_left(
    firewall: NftFirewall,
) -> None:
    s = sessions(firewall, max_sessions=2)
    await s.accept(A, IP_A)
    await s.accept(B, IP_B)

    async def here() -> set[str]:
        return {B, C}  # A left the bus

    await s.accept(C, IP_C, present=here)
    assert await set_of(firewall) == {(B, IP_B), (C, IP_C)}
    assert s.left(A, IP_A) is None and s.counters["wifi.sessions.reclaimed"] == 1


@pytest.mark.parametrize(
    "here",
    [{A, B, C}, {B}, set(), None],
    ids=["all-there", "without-the-new-one", "empty", "unknown"],
)
async def test_a_full_hotspot_takes_no_slot_when_all_are_there_or_it_cannot_tell(
    firewall: NftFirewall, here: set[str] | None
) -> None:
    """A list of devices without the phone that is accepting (an empty one, a radio that
    lists nobody) is not trusted: no session is given up on its word."""
    s = sessions(firewall, max_sessions=2)
    await s.accept(A, IP_A)
    await s.accept(B, IP_B)

    async def present() -> set[str] | None:
        return here

    with pytest.raises(PortalFull):
        await s.accept(C, IP_C, present=present)
    assert await set_of(firewall) == {(A, IP_A), (B, IP_B)}


async def test_a_restarted_daemon_keeps_one_address_of_a_mac_an_older_edged_set_at_several(
    firewall: NftFirewall,
) -> None:
    await firewall.allow(A, IP_A, 100)
    await firewall.allow(A, IP_B, 200)  # what the pairs-per-address edged left in the kernel
    await firewall.allow(B, IP_C, 100)
    s = sessions(firewall)
    await s.resync()
    assert await set_of(firewall) == {(A, IP_B), (B, IP_C)}
    assert s.active() == 2 and s.left(A, IP_A) is None and 190 < (s.left(A, IP_B) or 0) <= 200


async def test_revoking_a_pair_the_kernel_already_forgot_is_no_error(
    firewall: NftFirewall,
) -> None:
    await firewall.allow(A, IP_B, 60, revoke=[(A, IP_A)])
    assert await set_of(firewall) == {(A, IP_B)}


@pytest.mark.parametrize(
    "pair",
    [
        ("02:00:00:00:00:0a } ; flush ruleset ; {", IP_A),
        (A, "10.42.0.10 } ; flush ruleset ; {"),
        (A, ipaddress.IPv6Address("::1")),
    ],
    ids=["mac", "address-as-text", "ipv6"],
)
async def test_a_hostile_pair_to_revoke_never_reaches_nft(firewall: NftFirewall, pair: Any) -> None:
    await firewall.allow(B, IP_B, 60)
    with pytest.raises(ValueError, match="not a"):
        await firewall.allow(A, IP_C, 60, revoke=[pair])
    assert await set_of(firewall) == {(B, IP_B)}


# -- the ARP guard: an accepted phone's address is its own ----------------------------------


def guard_of(netns: Netns) -> tuple[set[tuple[str, str]], set[str]]:
    """(pairs, held addresses) of `table arp edged_hotspot`."""
    out: list[set[Any]] = []
    for name in ("owners", "held"):
        listed = json.loads(
            netns.run("nft", "-j", "list", "set", "arp", "edged_hotspot", name).stdout
        )
        [found] = [item["set"] for item in listed["nftables"] if "set" in item]
        keys = [e["elem"]["val"] if isinstance(e, dict) else e for e in found.get("elem", [])]
        out.append({tuple(k["concat"]) if isinstance(k, dict) else k for k in keys})
    return out[0], out[1]


async def test_a_moved_session_leaves_its_old_address_free_to_the_next_phone(
    netns: Netns, firewall: NftFirewall
) -> None:
    # The guard holds an accepted phone's address against other devices' ARP; a session
    # that moved (or was given up for a new phone) must not keep holding the old address,
    # or the phone DHCP gives it to next could not even reach the portal.
    s = sessions(firewall)
    await s.accept(A, IP_A)
    await s.accept(A, IP_B)
    assert guard_of(netns) == ({(A, str(IP_B))}, {str(IP_B)})


async def test_a_firewall_without_the_arp_guard_still_lets_phones_through(
    netns: Netns, firewall: NftFirewall
) -> None:
    # A node updated before `edged wifi apply` loads the new firewall: riders still get on.
    netns.run("nft", "delete", "table", "arp", "edged_hotspot")
    await sessions(firewall).accept(A, IP_A)
    assert await set_of(firewall) == {(A, IP_A)}
