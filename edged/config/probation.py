"""A config pushed by `config.set` is on probation until the node reaches the broker with it.

The previous file is kept beside the new one, and a marker file says "on probation". A node
that cannot reach the broker with the new config within `rollback_after_s` puts the previous
file back and restarts: a typo in a broker address pushed from dispatch must not cost a
technician's trip to a bus. The marker is on disk, so a crash during probation still ends in
a decision at the next start.

The time allowed is counted from when the probation began, not from each start: a config
that makes the node crash, hang (the unit's watchdog) or run out of memory before it
connects is restarted by systemd (`Restart=always`), and a deadline renewed at every start
would never come. The marker holds the kernel's boot id and a CLOCK_BOOTTIME reading, which
only mean something within one boot: after a power cut or a reboot (a bus switched off in a
depot without network) the count starts again, as the node cannot tell how long it was off.
A node stopped on purpose (SIGTERM) keeps what it had run: the time it is stopped does not
count, so a technician's `systemctl stop` does not cost the new config its trial.
"""

import contextlib
import json
import logging
import math
import stat
import time
from pathlib import Path

from core.boot import boot_id
from core.files import replace_atomically

log = logging.getLogger(__name__)

SINCE = "since_boottime_s"  # the marker's CLOCK_BOOTTIME reading at the probation's start
PAUSED = "paused_after_s"  # or how long it had run when the node was stopped on purpose


class Probation:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = path.with_name(path.name + ".previous")
        self.marker = path.with_name(path.name + ".pending")
        self.rolled_back = path.with_name(path.name + ".rolled-back")

    @property
    def active(self) -> bool:
        return self.marker.exists()

    def begin(self, new_text: str) -> None:
        """Keep the running file as `.previous`, write the new one, mark it on probation.
        Raises OSError with no probation begun (a full card): a marker left beside the
        running config would have the next start roll back to it, or commit an old one."""
        mode = _mode(self.path)
        # synced as the others: a `.previous` left empty by a power cut is no rollback
        replace_atomically(self.previous, self.path.read_bytes(), mode=mode, sync=True)
        was = self.token()
        _write_atomically(self.marker, _marker_text(boot_id(), _boottime()))
        try:
            _write_atomically(self.path, new_text, mode)
        except OSError:
            with contextlib.suppress(OSError):
                if was is None:
                    self.marker.unlink()
                else:  # the probation running before this config.set goes on
                    _write_atomically(self.marker, was.decode("utf-8", "replace"))
            raise

    def elapsed_s(self) -> float:
        """How long this boot has run the config on probation, over all its starts.

        A marker from another boot, an older release's marker (plain text) or an unreadable
        one starts the count now, and says so on the disk for the next start."""
        boot, now = boot_id(), _boottime()
        read = _read(self.marker, boot)
        if read is not None and read[0] == PAUSED:  # stopped on purpose: go on from there
            with contextlib.suppress(OSError):
                _write_atomically(self.marker, _marker_text(boot, now - read[1]))
            return read[1]
        if read is None or read[1] > now:
            with contextlib.suppress(OSError):  # a read-only disk: counted from each start
                _write_atomically(self.marker, _marker_text(boot, now))
            return 0.0
        return now - read[1]

    def pause(self) -> None:
        """A stop on purpose (SIGTERM: `systemctl stop`, a technician at work): the time
        until the next start of this boot does not count, as a crash's does."""
        boot = boot_id()
        read = _read(self.marker, boot)
        if read is None or read[0] != SINCE:
            return
        elapsed = max(0.0, _boottime() - read[1])
        doc = {"on_probation": True, "boot_id": boot, PAUSED: round(elapsed, 3)}
        with contextlib.suppress(OSError):
            _write_atomically(self.marker, json.dumps(doc) + "\n")

    def remaining_s(self, rollback_after_s: float) -> float:
        """What is left of `rollback_after_s` for the node to reach the broker (0 when over)."""
        return max(0.0, rollback_after_s - self.elapsed_s())

    def token(self) -> bytes | None:
        """The marker as it stands: a watch decides only the probation it began with, not
        one a second `config.set` began meanwhile (None: no probation)."""
        try:
            return self.marker.read_bytes()
        except FileNotFoundError:
            return None

    def commit(self) -> None:
        self.marker.unlink(missing_ok=True)

    def rollback(self) -> None:
        """Put `.previous` back; the file taken out is kept as `.rolled-back` (as the
        launcher keeps a config a failed trial changed): what a technician edited on the
        device during the probation is not lost, nor the pushed config to look at. Kept
        only as it can be: the rollback never fails for it (a full card, `EIO`)."""
        previous = self.previous.read_bytes()
        try:
            taken_out: bytes | None = self.path.read_bytes()
        except OSError as exc:  # deleted by hand, or a card that no longer reads it
            taken_out = None
            if not isinstance(exc, FileNotFoundError):
                log.error("%s not kept as %s: %s", self.path, self.rolled_back.name, exc)
        try:
            mode = _mode(self.path)
        except OSError:  # gone: the previous one's
            mode = _mode(self.previous)
        # a rollback again after a power cut cut the first short finds `.previous` in place
        # already: the file taken out the first time stays
        kept = False
        if taken_out is not None and taken_out != previous:
            try:
                replace_atomically(self.rolled_back, taken_out, mode=mode, sync=True)
                kept = True
            except OSError as exc:  # a courtesy: the rollback must not wait on it
                log.error("%s not kept as %s: %s", self.path, self.rolled_back.name, exc)
        try:
            replace_atomically(self.path, previous, mode=mode, sync=True)
        except OSError as exc:
            if not kept:
                raise
            # the copy took the room the rollback needed (a full card): the rollback first
            log.error("%s given up for the rollback: %s", self.rolled_back.name, exc)
            self.rolled_back.unlink(missing_ok=True)
            replace_atomically(self.path, previous, mode=mode, sync=True)
        self.marker.unlink(missing_ok=True)


def _boottime() -> float:
    """Seconds since boot, suspend included: the same clock for every process of a boot."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _marker_text(boot: str | None, since: float) -> str:
    doc = {"on_probation": True, "boot_id": boot, SINCE: round(since, 3)}
    return json.dumps(doc) + "\n"


def _read(marker: Path, boot: str | None) -> tuple[str, float] | None:
    """What the marker says of this boot's probation: (SINCE, when it began) or (PAUSED,
    how long it had run when stopped on purpose); None if it says neither."""
    if boot is None:
        return None
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("boot_id") != boot:
        return None
    for key in (SINCE, PAUSED):
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value) and (key == SINCE or value >= 0):
            return key, float(value)
    return None


def _mode(path: Path) -> int:
    """The running file's permissions, kept by what replaces it: install.sh lays it out 0640
    for the group `edged` (ops tools read it), where the unit's UMask=0077 would give 0600."""
    return stat.S_IMODE(path.stat().st_mode)


def _write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    replace_atomically(path, text, mode=mode, sync=True)
