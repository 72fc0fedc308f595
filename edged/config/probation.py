"""A config pushed by `config.set` is on probation until the node reaches the broker with it.

The previous file is kept beside the new one, and a marker file says "on probation". A node
that cannot reach the broker with the new config within `rollback_after_s` puts the previous
file back and restarts: a typo in a broker address pushed from dispatch must not cost a
technician's trip to a bus. The marker is on disk, so a crash during probation still ends in
a decision at the next start.
"""

import stat
from pathlib import Path

from core.files import replace_atomically


class Probation:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = path.with_name(path.name + ".previous")
        self.marker = path.with_name(path.name + ".pending")

    @property
    def active(self) -> bool:
        return self.marker.exists()

    def begin(self, new_text: str) -> None:
        """Keep the running file as `.previous`, write the new one, mark it on probation."""
        mode = stat.S_IMODE(self.path.stat().st_mode)
        # synced as the others: a `.previous` left empty by a power cut is no rollback
        replace_atomically(self.previous, self.path.read_bytes(), mode=mode, sync=True)
        _write_atomically(self.marker, "the config beside this file is on probation\n")
        _write_atomically(self.path, new_text)

    def commit(self) -> None:
        self.marker.unlink(missing_ok=True)

    def rollback(self) -> None:
        _write_atomically(self.path, self.previous.read_text(encoding="utf-8"))
        self.marker.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    replace_atomically(path, text, sync=True)
