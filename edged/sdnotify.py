"""Tell systemd how the daemon is doing: READY, STATUS, WATCHDOG, STOPPING (sd_notify(3)).

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading "@" means the abstract namespace), so it is written here by hand
rather than adding a dependency. Outside systemd (tests, `edged demo`, a shell) every call is
a no-op. A bad $NOTIFY_SOCKET or a send that fails is logged once and never raises: a
notification must not be what stops a bus.

`watchdog_loop` pings the watchdog only while the daemon is healthy — the event loop runs
on time and every check passed in by the node says so — and keeps STATUS= current. When it
stops pinging, systemd kills and restarts edged after WatchdogSec=. It imports nothing from
the node: the node hands it callables.
"""

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from core.logs import KEEP
from edged.payloads import DriverStatus

log = logging.getLogger(__name__)

HealthCheck = Callable[[], str | None]
"""Returns None when all is well, else the reason (shown in STATUS= and the log)."""

StatusSource = Callable[[], str | Awaitable[str]]
"""The STATUS= text, e.g. "online, outbox 0, 4/4 drivers running"; sync or async. Prefer
sync, from counters in memory: it runs every few seconds for months."""

_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args: object) -> None:
    """A broken notification socket would otherwise log on every ping, for months."""
    if key in _warned:
        log.debug(msg, *args)
    else:
        _warned.add(key)
        log.warning(msg, *args)


def _address(value: str | None) -> bytes | None:
    """The socket address of $NOTIFY_SOCKET, or None (unset, or a form we cannot use)."""
    if not value:
        return None
    if value.startswith("@"):
        address = b"\0" + os.fsencode(value[1:])
        limit = _SUN_PATH_MAX
    elif value.startswith("/"):
        address = os.fsencode(value)
        limit = _SUN_PATH_MAX - 1
    else:  # relative paths, and vsock:… (systemd 254+, for VMs): not for a Pi service
        _warn_once(
            "address",
            "NOTIFY_SOCKET=%r is not an absolute path or @abstract name: notifications are off",
            value,
        )
        return None
    if len(address) > limit:
        _warn_once("address", "NOTIFY_SOCKET=%r is too long: notifications are off", value)
        return None
    return address


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID unset or ours)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec


def _line(key: str, value: object) -> str:
    # one field per line: a newline inside a value would start a forged field
    text = str(value).replace("\r", " ").replace("\n", " ")
    return f"{key}={text}"


class SystemdNotifier:
    """sd_notify(3) for this process; every method returns whether the datagram left."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET"))
        self._watchdog_usec = _watchdog_usec(env) if self._address else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notification socket we can use."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WatchdogSec=, as sd_watchdog_enabled(3) advises),
        or None when systemd watches nothing."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2e6

    def notify(self, **fields: object) -> bool:
        """Send `KEY=value` fields in one datagram, e.g. notify(READY=1, STATUS="up")."""
        if self._address is None or not fields:
            return False
        data = "\n".join(_line(k, v) for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # never block the event loop: if systemd's queue is full, this ping is lost
            self._sock.sendto(data, socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            where = self._address.replace(b"\0", b"@", 1).decode(errors="replace")
            _warn_once(f"send:{exc.errno}", "cannot notify systemd at %s: %s", where, exc)
            self.close()  # a fresh socket next time
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete: systemd starts the units that wait for edged, and the
        watchdog from now on."""
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        """The line `systemctl status edged` shows."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The keep-alive ping; send it only when healthy (see watchdog_loop)."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """Shutting down for good (SIGTERM): systemd shows `deactivating`."""
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def reloading(self, status: str | None = None) -> bool:
        """Starting again in the same process (`restart`, `config.set`): READY=1 ends it.
        STOPPING=1 there would be final: systemd would wait for the process to exit."""
        return self.notify(RELOADING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_default: SystemdNotifier | None = None


def notify(**fields: object) -> bool:
    """sd_notify(3) through a notifier made from the environment on first use."""
    global _default
    if _default is None:
        _default = SystemdNotifier()
    return _default.notify(**fields)


# -- health-gated watchdog --------------------------------------------------------------


def task_alive(task: "asyncio.Task[Any]", what: str | None = None) -> HealthCheck:
    """A check that fails once `task` has ended (a crashed or returned outbox writer)."""
    name = what or task.get_name()

    def check() -> str | None:
        if not task.done():
            return None
        if task.cancelled():
            return f"{name} was cancelled"
        exc = task.exception()
        return f"{name} ended" + (f": {exc!r}" if exc is not None else "")

    return check


def beat_recent(last_beat: Callable[[], float], max_age_s: float, what: str) -> HealthCheck:
    """A check that fails when a heartbeat (time.monotonic() value) is older than max_age_s,
    e.g. LoopLag.last_beat: the probe task stopped or the loop is starved."""

    def check() -> str | None:
        age = time.monotonic() - last_beat()
        return f"{what}: no beat for {age:.1f} s" if age > max_age_s else None

    return check


def status_line(drivers: list[DriverStatus], connected: bool, outbox_depth: int) -> str:
    """systemd's STATUS= line: from memory only, it runs every few seconds."""
    running = sum(d.state == "running" for d in drivers)
    link = "online" if connected else "offline (no broker)"
    return f"{link}, outbox {outbox_depth}, {running}/{len(drivers)} drivers running"


async def watchdog_loop(
    notifier: SystemdNotifier,
    checks: Iterable[HealthCheck] = (),
    status: StatusSource | None = None,
    *,
    tick_s: float = 1.0,
    max_lag_s: float = 2.0,
    status_every_s: float = 10.0,
    status_timeout_s: float = 5.0,
) -> None:
    """Ping the watchdog at `notifier.watchdog_interval()` while healthy; keep STATUS= up
    to date. Runs until cancelled; returns at once outside systemd; never raises.

    Healthy means: this task woke up at most `max_lag_s` late (a loop blocked by a stuck
    call does not wake it at all, so systemd's timer runs out), every check returns None
    (a check that raises counts as failed), and `status`, when it is async, answered within
    `status_timeout_s`. One late tick only skips that tick's ping: the next tick, `tick_s`
    later, may ping again, so a single hiccup well under WatchdogSec= is not fatal.

    Checks are for what a restart cures (a task that ended, a starved loop), not for the
    world outside: no broker in a dead zone or a GPS in backoff must never restart a node.
    """
    if not notifier.enabled:
        return
    checks = tuple(checks)
    interval = notifier.watchdog_interval()
    tick = min(tick_s, interval) if interval is not None else tick_s
    last_ping = float("-inf")
    last_status_at = float("-inf")
    sent_status: str | None = None
    text = "running"
    reasons: list[str] = []
    try:
        while True:
            before = time.monotonic()
            await asyncio.sleep(tick)
            now = time.monotonic()
            was = reasons
            reasons = _failed(checks)
            late = now - before - tick
            if late > max_lag_s:
                reasons.append(f"event loop {late:.1f} s late")
            if status is not None and (reasons != was or now - last_status_at >= status_every_s):
                last_status_at = now
                got = await _status_text(status, status_timeout_s)
                if got is None:
                    reasons.append(f"status did not answer within {status_timeout_s:g} s")
                else:
                    text = got
            if reasons != was:
                if reasons:
                    log.warning(
                        "unhealthy, withholding the watchdog ping: %s",
                        "; ".join(reasons),
                        extra=KEEP,
                    )
                elif was:
                    log.info("healthy again: watchdog pings resume", extra=KEEP)
            if not reasons and interval is not None and now - last_ping >= interval:
                notifier.watchdog()
                last_ping = now
            shown = f"unhealthy: {'; '.join(reasons)}" if reasons else text
            if shown != sent_status:
                notifier.status(shown)
                sent_status = shown
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug here must not take the TaskGroup (and the node) down
        log.exception(
            "the watchdog loop failed: no more pings, systemd will restart edged", extra=KEEP
        )


def _failed(checks: tuple[HealthCheck, ...]) -> list[str]:
    reasons = []
    for check in checks:
        try:
            reason = check()
        except Exception as exc:
            reason = f"{getattr(check, '__name__', 'check')} raised {exc!r}"
        if reason:
            reasons.append(reason)
    return reasons


async def _status_text(status: StatusSource, timeout_s: float) -> str | None:
    """The status text; None when it did not come in time; a placeholder when it failed."""
    try:
        async with asyncio.timeout(timeout_s):
            got = status()
            if not isinstance(got, str):
                got = await got
            return got
    except TimeoutError:
        return None
    except Exception as exc:
        _warn_once("status", "the status text failed: %r", exc)
        return "running (status unavailable)"
