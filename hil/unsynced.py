"""A daemon whose kernel cannot say its clock is synchronised: a Pi without RTC after a cold
boot with no NTP, on any test machine.

edged asks adjtimex(2) whether NTP disciplines the clock (edged/clock.py); a test machine's
kernel is often synced, and a container cannot unsync it. A seccomp filter installed in the
child before it runs refuses adjtimex and clock_adjtime (EPERM): edged then cannot ask, and
treats the clock as it treats an unsynced one. `[clock] trust_system_clock = false` must go
with it. Linux only; x86-64, aarch64 and 32-bit Arm.
"""

import ctypes
import ctypes.util
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K

# machine -> (AUDIT_ARCH_*, system call numbers of adjtimex, clock_adjtime, clock_adjtime64)
ARCHES: dict[str, tuple[int, tuple[int, ...]]] = {
    "x86_64": (0xC000003E, (159, 305)),
    "aarch64": (0xC00000B7, (171, 266)),
    "armv7l": (0x40000028, (124, 372, 405)),
    "armv6l": (0x40000028, (124, 372, 405)),
}


class UnsyncedUnavailable(Exception):
    pass


def _program(arch: int, calls: tuple[int, ...]) -> bytes:
    """Classic BPF: another architecture or another call is allowed; these get EPERM."""
    ins: list[tuple[int, int, int, int]] = [
        (BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (BPF_JEQ_K, 1, 0, arch),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    for i, nr in enumerate(calls):
        to_refuse = len(calls) - i  # over the remaining tests and the allow
        ins.append((BPF_JEQ_K, to_refuse, 0, nr))
    ins.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    ins.append((BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM))
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def check_supported() -> None:
    if platform.system() != "Linux" or platform.machine() not in ARCHES:
        raise UnsyncedUnavailable(f"no seccomp filter for {platform.machine()}")


def refuse_adjtimex() -> None:
    """Call in the child (a `preexec_fn`): from here on, adjtimex fails with EPERM."""
    arch, calls = ARCHES[platform.machine()]
    code = _program(arch, calls)
    n = len(code) // 8
    buf = ctypes.create_string_buffer(code, len(code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(n, ctypes.addressof(buf))
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
