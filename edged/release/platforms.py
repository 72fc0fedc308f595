"""Which machines a wheel runs on: the bundle builder's targets and the node's own check.

A node in the field installs with no package index, so every wheel in a bundle must run on
it as it is. The check follows the wheel tag rules (PEP 425, PEP 600): a Python tag
(`py3`, `cp311`), an ABI (`none`, `abi3`, `cp311`) and a platform (`any`, `linux_<arch>`,
`manylinux_<glibc major>_<minor>_<arch>` and its legacy aliases), each possibly several
joined by dots. A 32-bit userland on a 64-bit kernel (32-bit Raspberry Pi OS on a Pi 4)
says `aarch64` in uname but runs armv7l wheels: the pointer size decides, as pip does.
"""

import os
import platform
import re
import struct
import sys
from dataclasses import dataclass

BOOKWORM_GLIBC = (2, 36)
"""Raspberry Pi OS and Debian 12 (bookworm) ship glibc 2.36."""
OLDEST_MANYLINUX = (2, 17)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
WHEEL_NAME = re.compile(
    r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-(?P<build>\d[A-Za-z0-9_.]*))?"
    r"-(?P<py>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)-(?P<plat>[A-Za-z0-9_.]+)\.whl"
)


@dataclass(frozen=True)
class Target:
    """A machine a bundle is built for: CPU architecture, CPython version, glibc."""

    name: str
    machine: str  # wheel platform suffix: aarch64, armv7l, x86_64
    python: tuple[int, int]
    glibc: tuple[int, int]

    @property
    def abi(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def python_text(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def glibc_text(self) -> str:
        return f"{self.glibc[0]}.{self.glibc[1]}"

    def platform_tags(self) -> list[str]:
        """Platform tags for `pip download --platform`, best first (pip does not widen a
        manylinux_2_36 request to the 2_17 wheels most projects publish)."""
        tags = [
            f"manylinux_{self.glibc[0]}_{minor}_{self.machine}"
            for minor in range(self.glibc[1], OLDEST_MANYLINUX[1] - 1, -1)
        ]
        return [*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}"]

    def describe(self) -> str:
        return f"{self.machine}, CPython {self.python_text}, glibc {self.glibc_text}"


TARGETS = {
    "aarch64": Target("aarch64", "aarch64", (3, 11), BOOKWORM_GLIBC),
    "armv7l": Target("armv7l", "armv7l", (3, 11), BOOKWORM_GLIBC),
}
"""Raspberry Pi OS bookworm, 64-bit and 32-bit, with its CPython 3.11."""


def machine() -> str:
    """The wheel architecture of this interpreter (armv7l for 32-bit on a 64-bit kernel)."""
    arch = platform.machine().lower()
    if struct.calcsize("P") == 4:
        if arch in ("aarch64", "arm64", "armv8l", "armv8b"):
            return "armv7l"
        if arch == "x86_64":
            return "i686"
    return arch


def glibc() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    m = re.fullmatch(r"glibc (\d+)\.(\d+).*", text)
    return (int(m[1]), int(m[2])) if m else None


def this_machine() -> Target:
    """The target a node is: what its bundles must be built for."""
    return Target(
        "native", machine(), (sys.version_info.major, sys.version_info.minor), glibc() or (0, 0)
    )


def target_named(name: str) -> Target:
    if name == "native":
        return this_machine()
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}: one of native, {', '.join(TARGETS)}") from None


def manylinux_glibc(tag: str, arch: str) -> tuple[int, int] | None:
    """The glibc a manylinux platform tag needs, or None when the tag is not for `arch`."""
    for legacy, version in LEGACY_MANYLINUX.items():
        if tag == f"{legacy}_{arch}":
            return version
    m = re.fullmatch(rf"manylinux_(\d+)_(\d+)_{re.escape(arch)}", tag)
    return (int(m[1]), int(m[2])) if m else None


def wheel_fits(filename: str, target: Target) -> bool:
    """Whether the wheel named `filename` installs and runs on `target` (some combination of
    its tags is one CPython accepts: PEP 425's list, as `packaging.tags` builds it)."""
    m = WHEEL_NAME.fullmatch(filename)
    if m is None:
        return False
    return any(
        _python_abi_fits(py, abi, target) and _platform_fits(plat, target)
        for py in m["py"].split(".")
        for abi in m["abi"].split(".")
        for plat in m["plat"].split(".")
    )


def _python_abi_fits(py: str, abi: str, target: Target) -> bool:
    major, minor = target.python
    older = re.fullmatch(rf"(cp|py){major}(\d*)", py)
    if older is None:
        return False
    kind, digits = older[1], older[2]
    if digits and int(digits) > minor:
        return False
    if abi == target.abi:
        return py == target.abi
    if abi == "abi3":  # the stable ABI: built for CPython 3.X, runs on 3.Y for Y >= X
        return kind == "cp" and bool(digits)
    if abi == "none":
        return kind == "py" or py == target.abi
    return False


def _platform_fits(plat: str, target: Target) -> bool:
    if plat in ("any", f"linux_{target.machine}"):
        return True
    needs = manylinux_glibc(plat, target.machine)
    return needs is not None and needs <= target.glibc


def glibc_needed(filename: str, machine_name: str) -> tuple[int, int] | None:
    """The oldest glibc the wheel's manylinux tags accept (None: no manylinux tag)."""
    m = WHEEL_NAME.fullmatch(filename)
    if m is None:
        return None
    found = [manylinux_glibc(t, machine_name) for t in m["plat"].split(".")]
    versions = [v for v in found if v is not None]
    return min(versions) if versions else None
