"""Run a command under the seccomp filters systemd would install for edged.service.

    python tests/systemd/sandbox.py systemd/edged.service -- COMMAND [ARGS...]

Without systemd as PID 1 (CI, a laptop) the unit's sandbox cannot be started for real, but
its seccomp part can: the same libseccomp that systemd uses, with the filters built from
the unit file itself —

- SystemCallFilter= lines, read as systemd reads them: @default, then each line adds its
  calls or (with ~) removes them, in order; groups expanded by `systemd-analyze
  syscall-filter`, so they match this systemd version;
- MemoryDenyWriteExecute=yes: mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding
  PROT_EXEC and shmat with SHM_EXEC fail with EPERM, as systemd's filter does;
- RestrictAddressFamilies=: socket(2) with any other family fails with EAFNOSUPPORT.

A call outside the allow list kills the process with SIGSYS (exit -31) instead of
systemd's EPERM (SystemCallErrorNumber=): a test must see it, not have it handled.

Not emulated: namespaces, read-only mounts, DevicePolicy, users and groups; those need PID 1
(the HIL rig on a Pi covers them).
"""

import ctypes
import errno
import mmap
import os
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path

_ACT_KILL_PROCESS = 0x80000000
_ACT_ALLOW = 0x7FFF0000
_CMP_EQ = 4
_CMP_MASKED_EQ = 7
_SHM_EXEC = 0o100000


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@cache
def expand(name: str) -> frozenset[str]:
    """A system call or @group, as this systemd version defines it."""
    if not name.startswith("@"):
        return frozenset([name])
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
    ).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            calls |= expand(word)
    return frozenset(calls)


def unit_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and line[0] not in "#;[" and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def allowed_calls(filter_lines: list[str]) -> set[str]:
    """The allow list systemd builds from SystemCallFilter= lines (first one not ~)."""
    assert filter_lines, "no SystemCallFilter= in the unit"
    assert not filter_lines[0].startswith("~"), "expected an allow list"
    allowed = set(expand("@default"))
    for line in filter_lines:
        deny = line.startswith("~")
        names: set[str] = set()
        for word in line.lstrip("~").split():
            names |= expand(word)
        allowed = allowed - names if deny else allowed | names
    return allowed


class _Seccomp:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def load(
        self, default: int, rules: list[tuple[int, str, list[tuple[int, int, int, int]]]]
    ) -> None:
        """One filter: (action, syscall name, [(arg, op, a, b)...]) rules over `default`.
        Names this architecture lacks (clock_adjtime64 on x86-64) are skipped, as systemd
        does."""
        ctx = self.lib.seccomp_init(default)
        assert ctx, "seccomp_init failed"
        try:
            for action, name, cmps in rules:
                nr = self.lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue
                array = (_ArgCmp * max(1, len(cmps)))(*(_ArgCmp(*c) for c in cmps))
                rc = self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
                if rc not in (0, -errno.EEXIST):
                    raise OSError(-rc, f"seccomp rule for {name}")
            rc = self.lib.seccomp_load(ctx)
            if rc != 0:
                raise OSError(-rc, "seccomp_load")
        finally:
            self.lib.seccomp_release(ctx)


def apply(unit: Path) -> None:
    settings = unit_settings(unit)
    sc = _Seccomp()
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        eperm = _act_errno(errno.EPERM)
        sc.load(
            _ACT_ALLOW,
            [
                (eperm, "mmap", [(2, _CMP_MASKED_EQ, wx, wx)]),
                (eperm, "mmap2", [(2, _CMP_MASKED_EQ, wx, wx)]),
                (eperm, "mprotect", [(2, _CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC)]),
                (eperm, "pkey_mprotect", [(2, _CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC)]),
                (eperm, "shmat", [(2, _CMP_MASKED_EQ, _SHM_EXEC, _SHM_EXEC)]),
            ],
        )
    families = " ".join(settings.get("RestrictAddressFamilies", [])).split()
    if families:
        keep = {getattr(socket, f) for f in families}
        refuse = _act_errno(errno.EAFNOSUPPORT)
        sc.load(
            _ACT_ALLOW,
            [(refuse, "socket", [(0, _CMP_EQ, f, 0)]) for f in range(46) if f not in keep],
        )
    # last: once loaded, even seccomp(2) itself is outside the allow list
    allowed = allowed_calls(settings["SystemCallFilter"])
    if os.geteuid() == 0:
        # SQLite fchown()s its journal to the database owner only when running as root;
        # the unit runs as edged, so this call never happens there
        allowed |= expand("@chown")
    sc.load(_ACT_KILL_PROCESS, [(_ACT_ALLOW, name, []) for name in sorted(allowed)])


def main(argv: list[str]) -> None:
    unit, sep, *command = argv
    assert sep == "--" and command, __doc__
    apply(Path(unit))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
