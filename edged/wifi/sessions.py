"""Phones that accepted the terms: the firewall's set, and the portal's view of it.

A session is a (MAC, IPv4) pair in the nft set `inet edged_hotspot allowed`, with the
session's length as its timeout: the kernel forgets it on time, whatever the daemon does.
Both halves must match for a packet to pass, so a phone that takes another's address (or
another's MAC alone) is not let through. The daemon keeps the same pairs in memory (to
answer the portal without asking the kernel each time), reads the set back when it starts
and puts back what a reload of the firewall dropped.

One session per MAC: a device that accepts again from another address (a laptop adding
address aliases, a phone given a new lease) moves its session there, and the old pair
leaves the set in the same `nft` transaction, so a device holds one slot and one address
at a time. When every slot is taken, a new phone may take the slot of a device no longer
on the hotspot (`on_hotspot`: the radio's stations), so a session does not outlive its
device when someone else needs the room.

The MAC address exists only there: in the kernel's set and this table, in memory, until the
session ends. It is never written to disk, logged, or sent anywhere.
"""

import asyncio
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core.counters import Counters
from core.errors import EdgedError
from core.logs import flood_key
from edged.wifi.layout import ALLOWED_SET, HELD_BY_SET, HELD_SET, HOLD_S, OWNERS_SET, TABLE
from edged.wifi.tool import run_tool

log = logging.getLogger(__name__)

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NFT_TIMEOUT_S = 10.0
TODAY_KEY = "wifi.sessions_today"


class FirewallError(EdgedError):
    """The firewall's set could not be read or changed; the message says why."""


class PortalFull(EdgedError):
    """As many sessions as the hotspot has room for are running."""


def normal_mac(mac: str) -> str:
    mac = mac.strip().lower()
    if not MAC.fullmatch(mac):
        raise ValueError(f"not a MAC address: {mac!r}")
    return mac


Pair = tuple[str, ipaddress.IPv4Address]
Present = Callable[[], Awaitable[set[str] | None]]
"""The MACs on the hotspot now (lower case), or None when that cannot be told."""
Forget = Callable[[ipaddress.IPv4Address], Awaitable[None]]
"""Called with a phone's address once the set lets it through (accepted, or put back after
a reload): the flows the firewall redirected while it was a stranger stay redirected
while they last (conntrack), so they are to be forgotten (`edged.wifi.conntrack`)."""


class Firewall(Protocol):
    async def allow(
        self, mac: str, ip: ipaddress.IPv4Address, timeout_s: int, *, revoke: Sequence[Pair] = ()
    ) -> None:
        """Let the pair through for `timeout_s`, and take `revoke`'s pairs out, at once."""
        ...

    async def sessions(self) -> list[tuple[str, ipaddress.IPv4Address, float]]:
        """(mac, ip, seconds left) of every pair in the set."""
        ...


class NftFirewall:
    """The set through the `nft` command (the daemon's CAP_NET_ADMIN passes to it).

    `prefix` runs it elsewhere (`ip netns exec NAME` in the tests); arguments are built from
    checked values only and passed as a list, never through a shell."""

    def __init__(self, *, nft: str = "nft", prefix: Sequence[str] = ()) -> None:
        self.argv = [*prefix, nft]

    async def _nft(self, *args: str, stdin: bytes | None = None) -> bytes:
        try:
            ran = await run_tool(*self.argv, *args, stdin=stdin, timeout_s=NFT_TIMEOUT_S)
        except TimeoutError:
            raise FirewallError(f"nft did not answer in {NFT_TIMEOUT_S:g} s") from None
        if ran is None:
            raise FirewallError(f"cannot run {self.argv[-1]}; install nftables")
        if ran.code != 0:
            text = ran.err.decode(errors="replace").strip().splitlines()
            hint = (
                "; the daemon needs CAP_NET_ADMIN: run `sudo edged wifi apply` (it adds it)"
                if "Operation not permitted" in "\n".join(text)
                else "; is the firewall loaded? `sudo edged wifi apply`"
            )
            raise FirewallError(f"nft failed: {text[-1] if text else ran.code}{hint}")
        return ran.out

    async def allow(
        self, mac: str, ip: ipaddress.IPv4Address, timeout_s: int, *, revoke: Sequence[Pair] = ()
    ) -> None:
        """Add the pair, or start its timeout again: add, delete, add (an add alone leaves
        an existing element's timeout as it was); and take out each pair of `revoke`: add,
        delete (a delete alone fails on a pair the kernel already forgot). One transaction:
        a moved session is never at both addresses, nor at neither. The same pairs go to
        the ARP guard (`table arp edged_hotspot`): no other device may claim the address."""
        mac = normal_mac(mac)
        lines, guard = [], []
        for old_mac, old_ip in revoke:
            pair = f"{normal_mac(old_mac)} . {_ipv4(old_ip)}"
            if (normal_mac(old_mac), old_ip) != (mac, ip):
                lines += _out(f"inet {TABLE} {ALLOWED_SET} {{ {pair} }}")
                guard += _out(f"arp {TABLE} {OWNERS_SET} {{ {pair} }}")
                guard += _out(f"arp {TABLE} {HELD_SET} {{ {_ipv4(old_ip)} }}")
                guard += _out(f"arp {TABLE} {HELD_BY_SET} {{ {pair} }}")
        pair = f"{mac} . {_ipv4(ip)} timeout {timeout_s}s"
        lines += _in(f"inet {TABLE} {ALLOWED_SET} {{ {pair} }}")
        guard += _in(f"arp {TABLE} {OWNERS_SET} {{ {pair} }}")
        held = min(HOLD_S, timeout_s)
        guard += _in(f"arp {TABLE} {HELD_SET} {{ {_ipv4(ip)} timeout {held}s }}")
        guard += _in(f"arp {TABLE} {HELD_BY_SET} {{ {mac} . {_ipv4(ip)} timeout {held}s }}")
        try:
            await self._run(lines + guard)
        except FirewallError:
            if await self._has_guard():
                raise
            # a firewall loaded by an older edged: the sessions still work, unguarded
            await self._run(lines)
            log.warning(
                "wifi: the hotspot's firewall has no ARP guard (table arp %s): another phone "
                "can take an accepted phone's traffic from the internet; `sudo edged wifi "
                "apply` loads the current one",
                TABLE,
                extra=flood_key("wifi.arp_guard"),
            )

    async def _run(self, lines: list[str]) -> None:
        await self._nft("-f", "-", stdin="".join(f"{line}\n" for line in lines).encode())

    async def _has_guard(self) -> bool:
        try:
            await self._nft("list", "set", "arp", TABLE, HELD_BY_SET)  # the newest set
        except FirewallError:
            return False
        return True

    async def sessions(self) -> list[tuple[str, ipaddress.IPv4Address, float]]:
        raw = await self._nft("-j", "list", "set", "inet", TABLE, ALLOWED_SET)
        try:
            data = json.loads(raw)
            return list(_elements(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise FirewallError(f"nft listed the set in a form edged cannot read: {exc}") from None


def _in(element: str) -> list[str]:
    """Add an element, or start its timeout again (an add alone leaves it as it was)."""
    return [f"add element {element}", f"delete element {element}", f"add element {element}"]


def _out(element: str) -> list[str]:
    """Delete an element, present or not (a delete alone fails on one the kernel forgot)."""
    return [f"add element {element}", f"delete element {element}"]


def _ipv4(ip: ipaddress.IPv4Address) -> str:
    if not isinstance(ip, ipaddress.IPv4Address):
        raise ValueError(f"not an IPv4 address: {ip!r}")
    return str(ip)


def _elements(data: dict[str, Any]) -> "list[tuple[str, ipaddress.IPv4Address, float]]":
    out = []
    for item in data["nftables"]:
        s = item.get("set")
        if not s:
            continue
        for e in s.get("elem", []):
            inner = e["elem"]
            mac, ip = inner["val"]["concat"]
            left = inner.get("expires", inner.get("timeout", 0))
            out.append((normal_mac(mac), ipaddress.IPv4Address(ip), float(left)))
    return out


@dataclass(frozen=True)
class Session:
    ip: ipaddress.IPv4Address
    """the one address the device's session is at"""
    ends: float
    """monotonic"""

    def left(self, now: float) -> float:
        return max(0.0, self.ends - now)


class Sessions:
    """The portal's side: who accepted, until when; and how many today (a count only)."""

    def __init__(
        self,
        firewall: Firewall,
        *,
        session_s: int,
        max_sessions: int,
        counters: Counters,
        timezone: str = "Europe/Paris",
        get_state: Callable[[str, Any], Any] | None = None,
        set_state: Callable[[str, Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        forget: Forget | None = None,
    ) -> None:
        self.firewall = firewall
        self.forget = forget
        self.session_s = session_s
        self.max_sessions = max_sessions
        self.counters = counters
        self.zone = ZoneInfo(timezone)
        self.clock = clock
        self.wall = wall
        self._get_state = get_state
        self._set_state = set_state
        self._table: dict[str, Session] = {}
        """by MAC: one session per device"""
        self._lock = asyncio.Lock()
        self._day, self.today = self._load_today()

    # -- counts ---------------------------------------------------------------------------

    def _date(self) -> str:
        return datetime.fromtimestamp(self.wall(), self.zone).date().isoformat()

    def _load_today(self) -> tuple[str, int]:
        day = self._date()
        kept = self._get_state(TODAY_KEY, None) if self._get_state else None
        if isinstance(kept, dict) and kept.get("day") == day and isinstance(kept.get("n"), int):
            return day, int(kept["n"])
        return day, 0

    def sessions_today(self) -> int:
        if self._date() != self._day:
            self._day, self.today = self._date(), 0
        return self.today

    def _count_one(self) -> None:
        self.sessions_today()
        self.today += 1
        if self._set_state is not None:
            self._set_state(TODAY_KEY, {"day": self._day, "n": self.today})

    def active(self) -> int:
        now = self.clock()
        self._table = {k: s for k, s in self._table.items() if s.left(now) > 0}
        return len(self._table)

    # -- the portal -------------------------------------------------------------------

    def left(self, mac: str | None, ip: ipaddress.IPv4Address) -> float | None:
        """Seconds left of this phone's session at this address, or None when it has none
        (a device whose session moved to another of its addresses has none here)."""
        if mac is None:
            return None
        session = self._table.get(mac)
        if session is None or session.ip != ip:
            return None
        left = session.left(self.clock())
        return left if left > 0 else None

    async def accept(
        self, mac: str, ip: ipaddress.IPv4Address, *, present: Present | None = None
    ) -> float:
        """Let the phone through for the session's length (again, if it already was; at
        this address only, if it was at another); seconds left. At the limit, a new phone
        takes the slot of a device `present` no longer lists (None: no slot is taken back).
        Raises PortalFull or FirewallError."""
        mac = normal_mac(mac)
        async with self._lock:
            self.active()
            had = self._table.get(mac)
            revoke: list[Pair] = []
            if had is not None and had.ip != ip:
                revoke.append((mac, had.ip))
            if had is None and len(self._table) >= self.max_sessions:
                gone = await self._gone(mac, present)
                if gone is None:
                    self.counters.inc("wifi.portal.full")
                    raise PortalFull(
                        f"the hotspot has {self.max_sessions} phones online, its limit; "
                        "try again in a while"
                    )
                revoke.append((gone, self._table[gone].ip))
            await self.firewall.allow(mac, ip, self.session_s, revoke=revoke)
            for old_mac, _ in revoke:
                if old_mac != mac:
                    del self._table[old_mac]
                    self.counters.inc("wifi.sessions.reclaimed")
                else:
                    self.counters.inc("wifi.sessions.moved")
            self._table[mac] = Session(ip, self.clock() + self.session_s)
            if had is None:
                self._count_one()
            if self.forget is not None:
                await self.forget(ip)
            return float(self.session_s)

    async def _gone(self, mac: str, present: Present | None) -> str | None:
        """The session to give up for `mac`, a new phone: of a device no longer on the
        hotspot, the one with the least time left; None when every device is still there,
        or when the list cannot be trusted (unknown, or without the new phone itself)."""
        here = await present() if present is not None else None
        if here is None or mac not in here:
            return None
        gone = [m for m in self._table if m not in here]
        return min(gone, key=lambda m: self._table[m].ends) if gone else None

    async def resync(self) -> None:
        """Take what the kernel has (after a daemon restart) and put back what it lost (a
        reload of the firewall empties the set). A MAC the kernel holds at several
        addresses (a set an older edged filled) keeps one: ours, else the longest."""
        async with self._lock:
            now = self.clock()
            kernel: dict[str, dict[ipaddress.IPv4Address, float]] = {}
            for mac, ip, left in await self.firewall.sessions():
                kernel.setdefault(mac, {})[ip] = left
            for mac, ips in kernel.items():
                ip, left = max(ips.items(), key=lambda kv: kv[1])
                if mac not in self._table and left > 0:
                    self._table[mac] = Session(ip, now + left)
            for mac, session in list(self._table.items()):
                left = int(session.left(now))
                there = kernel.get(mac, {})
                extra = [(mac, ip) for ip in there if ip != session.ip]
                if left < 1 or (session.ip in there and not extra):
                    continue
                await self.firewall.allow(mac, session.ip, left, revoke=extra)
                if session.ip not in there:
                    self.counters.inc("wifi.sessions.restored")
                    if self.forget is not None:  # a stranger meanwhile: its new flows too
                        await self.forget(session.ip)
                if extra:
                    self.counters.inc("wifi.sessions.merged")
