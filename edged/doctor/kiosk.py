"""Can the kiosk page listen where the config says? A port another program holds (a demo
left running, a web server) would leave the screen blank while everything else works.

The port is tried as the daemon binds it; when it is taken, the holder is looked up through
/proc (the listening socket's inode, then the process holding it), so the line names it.
"""

import errno
import json
import os
import socket
from pathlib import Path

from edged.config.kiosk import BROWSER_POLICY, KioskConfig, browser_filter, screen_origin
from edged.doctor.check import Check, fail, ok, skip, warn
from edged.web.accept import listening_sockets

SECTION = "kiosk"
LISTEN = "0A"
"""TCP_LISTEN in /proc/net/tcp's `st` column."""
EMOJI_FONT = "NotoColorEmoji.ttf"
"""The file of Debian's / Raspberry Pi OS's fonts-noto-color-emoji (docs/kiosk.md, Emoji)."""
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


def check_kiosk(
    kiosk: KioskConfig | None, held_by: list[int], proc: Path = Path("/proc")
) -> list[Check]:
    """One line for the page's address; nothing when the kiosk is off."""
    if kiosk is None or not kiosk.enabled:
        return []
    where = f"{kiosk.host}:{kiosk.port}"
    if kiosk.port == 0:
        return [ok(SECTION, "port", f"{kiosk.host}, any free port (port = 0)")]
    try:
        left_out = _try_bind(kiosk.host, kiosk.port)
    except OSError as exc:
        return [_refused(kiosk, where, exc, held_by, proc)]
    if left_out:
        return [
            ok(
                SECTION,
                "port",
                f"{where} is free: the page will be served there, not on "
                + ", ".join(f"{address} ({exc.strerror or exc})" for address, exc in left_out),
            )
        ]
    return [ok(SECTION, "port", f"{where} is free: the page will be served there")]


def check_emoji_font(
    kiosk: KioskConfig | None, font_dirs: tuple[Path, ...] = FONT_DIRS
) -> list[Check]:
    """The screen's browser draws announcements' emoji from this machine's fonts: without an
    emoji font the page drops them (kiosk.js), so a missing font is a warning, not a fault.
    The config can enable the kiosk after install.sh ran, hence a check here too."""
    if kiosk is None or not kiosk.enabled:
        return []
    for d in font_dirs:
        found = next(d.rglob(EMOJI_FONT), None) if d.is_dir() else None
        if found is not None:
            return [ok(SECTION, "emoji font", f"{found}")]
    return [
        warn(
            SECTION,
            "emoji font",
            f"no {EMOJI_FONT} under {', '.join(map(str, font_dirs))}: the screen drops emoji",
            "if this node shows the page: sudo apt-get install fonts-noto-color-emoji",
        )
    ]


def check_browser_policy(kiosk: KioskConfig | None, policy: Path = BROWSER_POLICY) -> list[Check]:
    """The screen's browser allows the one address install.sh read in the config then: a
    config changed since (by hand, by a config.set) moves the page where the screen shows
    "blocked by your administrator"; a kiosk enabled since leaves the browser unlocked."""
    if kiosk is None or not kiosk.enabled or kiosk.port == 0:
        return []
    page = screen_origin(kiosk)
    again = "run systemd/install.sh again: it writes the configured address"
    try:
        allowed = json.loads(policy.read_text(encoding="utf-8")).get("URLAllowlist")
    except FileNotFoundError:
        return [
            warn(
                SECTION,
                "browser policy",
                f"no {policy}: the screen's browser is not locked to the page",
                f"if this node shows the page: {again}",
            )
        ]
    except (OSError, ValueError, AttributeError) as exc:
        return [fail(SECTION, "browser policy", f"{policy}: unreadable ({exc})", again)]
    if not isinstance(allowed, list):
        allowed = [allowed]
    if browser_filter(kiosk) in allowed:
        return [ok(SECTION, "browser policy", f"{policy} allows the page, {page}")]
    if page in allowed:  # written by an install before the filter's leading dot
        return [
            warn(
                SECTION,
                "browser policy",
                f"{policy} allows {page} and every subdomain of {kiosk.host} on that port",
                again,
            )
        ]
    return [
        fail(
            SECTION,
            "browser policy",
            f"{policy} allows {', '.join(map(str, allowed))}, not the page at {page}: the "
            "screen shows 'blocked by your administrator'",
            again,
        )
    ]


def _try_bind(host: str, port: int) -> list[tuple[str, OSError]]:
    """Bind as the kiosk does (`edged.web.accept.listening_sockets`: every address of the
    host it has), then let go; the addresses left out, with why."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve {host}: {exc.strerror}") from exc
    sockets, left_out = listening_sockets(port, infos, backlog=1)
    for s in sockets:
        s.close()
    return left_out


def _refused(kiosk: KioskConfig, where: str, exc: OSError, held_by: list[int], proc: Path) -> Check:
    change = "or set another [services.kiosk] port (enabled = false turns the page off)"
    if exc.errno == errno.EADDRINUSE:
        holders = listeners(kiosk.port, proc)
        ours = [pid for pid, _ in holders if pid in held_by]
        if ours:
            return skip(SECTION, "port", f"{where}: served by the running edged (pid {ours[0]})")
        if held_by and not holders:
            # the service's sockets may be out of this user's sight
            return skip(SECTION, "port", f"{where} is in use, likely by the running edged")
        who = ", ".join(f"{name} (pid {pid})" for pid, name in holders) or "another program"
        return fail(
            SECTION,
            "port",
            f"{where} is taken by {who}: the kiosk page cannot be served",
            f"stop it, {change}; edged takes the port as soon as it is free"
            + ("" if holders else f" (`sudo ss -ltnp 'sport = :{kiosk.port}'` names it)"),
        )
    if exc.errno == errno.EACCES:
        return fail(
            SECTION,
            "port",
            f"{where}: permission denied (ports below 1024 need a privilege edged has not)",
            f"use a port from 1024 up: {change}",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return fail(
            SECTION,
            "port",
            f"{where}: {kiosk.host} is not an address of this machine ({exc.strerror})",
            "set [services.kiosk] host to one of its addresses (127.0.0.1 for a local screen)",
        )
    return fail(SECTION, "port", f"{where}: cannot listen ({exc.strerror or exc})", change)


def listeners(port: int, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, program name) of the processes listening on this TCP port, as far as this user
    may see: other users' file descriptors are hidden from all but root."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and fields[1].endswith(f":{port:04X}"):
                inodes.add(fields[9])
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if target in wanted:
                found.append((int(entry.name), _name(entry)))
                break
    return sorted(found)


def _name(entry: Path) -> str:
    try:
        argv = (entry / "cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    words = [a.decode(errors="replace") for a in argv if a]
    if len(words) > 1 and os.path.basename(words[0]).startswith("python"):
        # `python -m edged demo`, or a script run by its interpreter: name the program
        words = words[2:] if words[1] == "-m" else words[1:]
    if not words:
        return "?"
    return " ".join([os.path.basename(words[0]), *words[1:3]])
