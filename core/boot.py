"""This boot's id: what tells a restart of the daemon from a reboot of the machine (the
monotonic and boot-time clocks start again only at a reboot)."""

from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID) -> str | None:
    """This boot's id (the kernel's, new at each boot); None where it cannot be read."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
