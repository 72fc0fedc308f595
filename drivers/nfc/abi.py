"""libnfc's target structures as `nfc.libnfc` reads them, sized for the ABI it runs on.

pynfc 0.1.1 was generated on x86-64: it declares libnfc's `size_t` fields (`szUidLen`,
`szAtsLen`) as 64-bit integers. On a 32-bit system (armhf: 32-bit Raspberry Pi OS) `size_t`
is 4 bytes, so through pynfc's structures every UID length read is garbage and every card is
dropped. This module declares the few structures the driver reads itself, from libnfc 1.8's
`nfc/nfc-types.h`: packed (`#pragma pack(1)` there), `size_t` of the width asked for —
`ctypes.c_size_t` for the machine's own (`NATIVE`), an explicit 4 or 8 to model the other
ABI in tests — and binds the one call that passes them with those types.

The union `nfc_target_info` is declared with its largest member only (`nai`, ISO 14443A:
the tests check against the header that it is the largest for both widths), so its size and
the offset of `nm` after it are libnfc's.

`check()` asks libnfc's own compiled code whether it agrees: `str_nfc_target` prints a
target laid out as edged lays it out, and the printed modulation, ATQA, UID, SAK and ATS must
be what was written. It runs in a child process, since a libnfc that reads the lengths
elsewhere may read far past the target and crash: that must not take the node with it.

The child is a Python start: 11 ms of CPU here, a tenth of a second at a sixth of this core
(bench.pizero's Pi Zero 2 W), in the middle of the node's start. Its answer depends only on
the libnfc file the loader picks and on edged's layout, so a node keeps the last agreement
in its state directory (`RECORD`) and checks again only when one of them changed: another
libnfc file or the same path replaced (an upgrade), a loader cache rebuilt (`ldconfig`, run by
every package install), another `LD_LIBRARY_PATH`, another layout or probe.
"""

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, DriverError
from core.files import clear_left, replace_atomically
from drivers.nfc.binding import SONAMES

# nfc-types.h: enum nfc_modulation_type, enum nfc_baud_rate
NMT_ISO14443A = 1
NBR_106 = 1

Size = type[ctypes.c_uint32] | type[ctypes.c_uint64] | type[ctypes.c_size_t]


@dataclass(frozen=True)
class Layout:
    """`nfc_target` and what it holds, for one width of `size_t`."""

    size_t: Size
    Iso14443aInfo: type[ctypes.Structure]
    TargetInfo: type[ctypes.Union]
    Modulation: type[ctypes.Structure]
    Target: type[ctypes.Structure]

    @property
    def size_t_bytes(self) -> int:
        return ctypes.sizeof(self.size_t)

    def describe(self) -> str:
        nai, target = self.Iso14443aInfo, self.Target
        return (
            f"size_t of {self.size_t_bytes} bytes: nfc_iso14443a_info.szUidLen at "
            f"{nai.szUidLen.offset}, abtUid at {nai.abtUid.offset}, szAtsLen at "
            f"{nai.szAtsLen.offset}; nfc_target.nm at {target.nm.offset}, "
            f"sizeof(nfc_target) {ctypes.sizeof(target)}"
        )


def layout(size_t: Size) -> Layout:
    """The structures with `size_t` of this type (packed, as libnfc's header declares them)."""

    class Iso14443aInfo(ctypes.Structure):
        _pack_ = 1
        _fields_ = (
            ("abtAtqa", ctypes.c_uint8 * 2),
            ("btSak", ctypes.c_uint8),
            ("szUidLen", size_t),
            ("abtUid", ctypes.c_uint8 * 10),
            ("szAtsLen", size_t),
            ("abtAts", ctypes.c_uint8 * 254),
        )

    class TargetInfo(ctypes.Union):
        _pack_ = 1
        _fields_ = (("nai", Iso14443aInfo),)

    class Modulation(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("nmt", ctypes.c_int), ("nbr", ctypes.c_int))  # two C enums

    class Target(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("nti", TargetInfo), ("nm", Modulation))

    return Layout(size_t, Iso14443aInfo, TargetInfo, Modulation, Target)


NATIVE = layout(ctypes.c_size_t)


def _bind(fn: Any, restype: Any, *argtypes: Any) -> Any:
    """A prototype of our own at the address of a libnfc function (drivers.nfc.binding)."""
    address = ctypes.cast(fn, ctypes.c_void_p).value
    if address is None:
        raise DriverError(f"libnfc's {getattr(fn, '__name__', 'function')} has no address")
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


def select_passive_target(nfc: Any, lay: Layout = NATIVE) -> Any:
    """`nfc_initiator_select_passive_target(device, modulation, init_data, size, *target)`
    typed with this layout's structures, not opaque pointers."""
    return _bind(
        nfc.nfc_initiator_select_passive_target,
        ctypes.c_int,
        ctypes.c_void_p,
        lay.Modulation,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.POINTER(lay.Target),
    )


# -- the check against libnfc ------------------------------------------------------------

PROBE = {  # a double-size UID and an ATS: every field the driver reads, and one after
    "modulation": "ISO/IEC 14443A (106 kbps)",
    "ATQA": "0044",
    "UID": "04a1b2c3d4e5f6",
    "SAK": "20",
    "ATS": "0578807002",
}
PROBE_TIMEOUT_S = 20.0  # a Python start and a libnfc load; slow under emulation
_CHILD = f"""
import ctypes, sys
for name in {SONAMES!r}:
    try:
        lib = ctypes.CDLL(name)
        break
    except OSError:
        pass
else:
    sys.exit("libnfc cannot be loaded: {", ".join(SONAMES)}")
fn = lib.str_nfc_target
fn.restype = ctypes.c_int
fn.argtypes = (ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_bool)
buf = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]), 65536)
out = ctypes.c_char_p()
res = fn(ctypes.byref(out), buf, False)
sys.stdout.write(out.value.decode(errors="replace") if res >= 0 and out.value else f"error {{res}}")
with open("/proc/self/maps") as maps:  # the file the loader picked, for the record
    found = [ln.partition("/")[2] for ln in maps if "/libnfc.so" in ln]
sys.stdout.write("\\0/" + found[0].rstrip("\\n") if found else "")
"""
FAULT_SIGNALS = frozenset(
    int(s) for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT)
)
"""The signals a program dies of by its own fault (libnfc reading past a target it misread,
or glibc aborting on what that corrupted). Any other, SIGKILL from the OOM killer above
all, came from outside: it says nothing of the layout, and the check is tried again."""
LIBRARY_MARK = "\0"
"""Ends what `str_nfc_target` printed; the path of the libnfc the child loaded follows."""

RECORD = "nfc-layout.json"
"""In the node's state directory: the libnfc and layout of the last check that agreed."""
RECORD_MAX_BYTES = 8192
LD_CACHE = Path("/etc/ld.so.cache")
"""The dynamic loader's cache: rebuilt when a library is installed or removed."""

_FIELDS = {
    "ATQA": r"ATQA \(SENS_RES\):",
    "UID": r"UID \(NFCID\d\):",
    "SAK": r"SAK \(SEL_RES\):",
    "ATS": r"\bATS:",
}


def probe_target(lay: Layout) -> bytes:
    """The bytes of `PROBE` as a target laid out with `lay`."""
    target = lay.Target()
    target.nm.nmt, target.nm.nbr = NMT_ISO14443A, NBR_106
    nai = target.nti.nai
    for name, field in (("ATQA", nai.abtAtqa), ("UID", nai.abtUid), ("ATS", nai.abtAts)):
        data = bytes.fromhex(PROBE[name])
        ctypes.memmove(field, data, len(data))
    nai.btSak = int(PROBE["SAK"], 16)
    nai.szUidLen = len(bytes.fromhex(PROBE["UID"]))
    nai.szAtsLen = len(bytes.fromhex(PROBE["ATS"]))
    return bytes(target)


def parse(text: str) -> dict[str, str]:
    """What `str_nfc_target` printed, as `PROBE` holds it (fields it did not print: absent)."""
    read: dict[str, str] = {}
    first = text.partition("\n")[0]
    if first.endswith(" target:"):
        read["modulation"] = first.removesuffix(" target:")
    for name, label in _FIELDS.items():
        found = re.search(label + r"((?: +[0-9a-fA-F]{2})*)", text)
        if found:
            read[name] = "".join(found.group(1).split()).lower()
    return read


def check(lay: Layout = NATIVE, *, remember_in: Path | None = None) -> None:
    """libnfc reads a target laid out with `lay` as written, or a `ConfigError` says why not.

    With `remember_in` (the node's state directory), an agreement is recorded there and the
    child is not run again while its libnfc and `lay` are the same (see the module doc);
    a refusal is never recorded. A `DriverError` (retried) if the check could not run to
    an answer: not in time, its child killed from outside (not by a fault of its own) or
    failing by itself (a non-zero exit: short of memory to start, say).
    """
    if remember_in is not None and agreed_before(remember_in, lay):
        return
    try:
        run = subprocess.run(
            # -I: not the daemon's environment nor its working directory on the path; -S:
            # no site-packages to scan (the child needs ctypes only): half the child's CPU,
            # which counts at each start of a reader on a Pi's slow core
            [sys.executable, "-I", "-S", "-c", _CHILD, probe_target(lay).hex()],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise DriverError(
            f"the check of libnfc's structure layout did not finish in {PROBE_TIMEOUT_S:g} s "
            "(machine overloaded?): it is tried again"
        ) from None
    if run.returncode < 0 and -run.returncode not in FAULT_SIGNALS:
        raise DriverError(
            f"the check of libnfc's structure layout was killed by signal {-run.returncode} "
            "from outside (out of memory? the service stopping?): it is tried again"
        )
    if run.returncode > 0:
        # the child itself failed (no memory to start Python or map libnfc): libnfc never
        # read the target, so nothing is known of the layout; its disagreement would be
        # printed (exit 0) or a crash by a fault signal
        raise DriverError(
            "the check of libnfc's structure layout could not run to an answer "
            f"(exit {run.returncode}: {' '.join(run.stderr.split())[-300:]}): it is tried again"
        )
    if run.returncode < 0:
        found = (
            f"libnfc crashed (signal {-run.returncode}) reading a test target laid out as "
            "edged reads them"
        )
    else:
        printed, _, library = run.stdout.partition(LIBRARY_MARK)
        read = parse(printed)
        wrong = [
            f"{k} as {read.get(k, 'nothing')!r} (edged wrote {v!r})"
            for k, v in PROBE.items()
            if read.get(k) != v
        ]
        if not wrong:
            if remember_in is not None and library:
                remember(remember_in, lay, library)
            return
        found = "libnfc read a test target differently: " + ", ".join(wrong)
    raise ConfigError(
        "driver nfc.libnfc",
        [
            f"{found}. edged lays out nfc_target with {lay.describe()}, and will not read "
            "cards it would misread. Check that libnfc6 is Debian's libnfc 1.8 for this "
            "machine's architecture (`dpkg --print-architecture`, `dpkg -l libnfc6`) and "
            "report this message with the output of `edged doctor`"
        ],
    )


# -- the record of the last agreement -----------------------------------------------------


def _identity(lay: Layout, library: str) -> dict[str, Any] | None:
    """What the check's answer depends on, for a child that loaded `library`; None if that
    file is gone (the loader would pick another)."""
    try:
        lib = os.stat(library)
    except OSError:
        return None
    try:
        ld: list[int] | None = _stamp(os.stat(LD_CACHE))
    except OSError:
        ld = None
    return {
        "layout": lay.describe(),
        "probe": PROBE,
        "library": library,
        "library_file": [lib.st_dev, *_stamp(lib)],
        "ld_cache": ld,
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
    }


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def agreed_before(directory: Path, lay: Layout = NATIVE) -> bool:
    """Whether `directory`'s record says libnfc agreed with `lay`, and nothing it depends on
    has changed since. An unreadable, foreign or malformed record: False (check again)."""
    clear_left(directory, re.escape(RECORD))  # a record's write killed midway
    try:
        with open(directory / RECORD, "rb") as f:
            raw = f.read(RECORD_MAX_BYTES + 1)
        if len(raw) > RECORD_MAX_BYTES:
            return False
        record = json.loads(raw)
    except (OSError, ValueError):
        return False
    library = record.get("library") if isinstance(record, dict) else None
    if not isinstance(library, str) or not library.startswith("/"):
        return False
    now = _identity(lay, library)
    return now is not None and now == record


def remember(directory: Path, lay: Layout, library: str) -> None:
    """Record that libnfc at `library` agreed with `lay`. Best effort: a directory that
    cannot be written only means the next start checks again."""
    identity = _identity(lay, library)
    if identity is None:
        return
    with contextlib.suppress(OSError):
        replace_atomically(directory / RECORD, json.dumps(identity, sort_keys=True))
