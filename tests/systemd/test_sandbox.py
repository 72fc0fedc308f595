"""edged inside the seccomp part of its unit's sandbox (see tests/systemd/sandbox.py).

The risky settings are the ones that fail only at run time on the Pi: a system call the
filter drops (glibc's adjtimex() is the clock_adjtime system call), libffi closures under
MemoryDenyWriteExecute= (ctypes callbacks: libnfc through pynfc), a socket family left out.
"""

import ctypes.util
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "systemd" / "edged.service"
SANDBOX = Path(__file__).with_name("sandbox.py")


def sandboxed(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SANDBOX), str(UNIT), "--", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def python(code: str) -> subprocess.CompletedProcess[str]:
    return sandboxed(sys.executable, "-c", textwrap.dedent(code))


@pytest.fixture(scope="module", autouse=True)
def _seccomp_works() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `apt-get install systemd` (./dev test does)")
    if ctypes.util.find_library("seccomp") is None:
        pytest.fail("libseccomp is missing: `apt-get install libseccomp2` (systemd needs it)")
    r = sandboxed("/bin/true")
    if r.returncode != 0 and "seccomp_load" in r.stderr:
        pytest.skip(f"this kernel or container refuses seccomp filters: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr


def test_the_emulation_kills_a_call_outside_the_allow_list() -> None:
    r = python("import os; os.chroot('/')")  # @privileged
    assert r.returncode == -signal.SIGSYS


def test_the_emulation_refuses_writable_executable_memory() -> None:
    r = python(
        """
        import mmap
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except PermissionError:
            print("refused")
        """
    )
    assert r.stdout.strip() == "refused", r.stderr


def test_the_emulation_refuses_socket_families_left_out() -> None:
    r = python(
        """
        import socket
        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        except OSError as exc:
            print(exc.errno == __import__("errno").EAFNOSUPPORT)
        """
    )
    assert r.stdout.strip() == "True", r.stderr


def test_ctypes_callbacks_work_without_writable_executable_memory() -> None:
    """libffi's closures fall back to a memfd mapped twice (RW and RX) when W+X is refused:
    memfd_create must stay allowed (it is, in @system-service's @ipc)."""
    r = python(
        """
        import ctypes, ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
        values = (ctypes.c_int * 5)(5, 3, 4, 1, 2)
        libc.qsort(values, 5, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
        print(list(values))
        """
    )
    assert r.stdout.strip() == "[1, 2, 3, 4, 5]", r.stderr


def test_command_signatures_verify_in_the_sandbox() -> None:
    r = python(
        """
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        key = Ed25519PrivateKey.generate()
        key.public_key().verify(key.sign(b"door.unlock"), b"door.unlock")
        print("ok")
        """
    )
    assert r.stdout.strip() == "ok", r.stderr


def test_libnfc_loads_and_looks_for_readers_in_the_sandbox() -> None:
    """pynfc loads libfreefare, libnfc and libusb with ctypes (a library that wanted an
    executable stack would fail here under W^X), then libnfc scans USB and serial ports."""
    probe = python("import pynfc.nfc")
    if probe.returncode != 0 and "No module named 'pynfc'" in probe.stderr:
        pytest.skip("pynfc is not installed (the test extra installs it)")
    r = python(
        """
        import ctypes
        import pynfc.nfc as nfc
        context = ctypes.POINTER(nfc.nfc_context)()
        nfc.nfc_init(ctypes.byref(context))
        found = (nfc.nfc_connstring * 4)()
        n = nfc.nfc_list_devices(context, (nfc.nfc_connstring * 0).from_buffer(found), 4)
        nfc.nfc_exit(context)
        print("scanned", bool(context), n >= 0)
        """
    )
    assert r.stdout.strip() == "scanned True True", r.stdout + r.stderr


def test_the_clock_check_can_still_ask_the_kernel() -> None:
    """adjtimex() is the clock_adjtime system call in glibc; ProtectClock= or a filter
    without it would leave every payload stamped as unsynced."""
    r = python("from edged.clock import kernel_clock_synced; print(kernel_clock_synced())")
    assert r.stdout.strip() in ("True", "False"), r.stdout + r.stderr


@pytest.mark.slow
def test_the_demo_node_runs_in_the_sandbox() -> None:
    edged = Path(sys.executable).with_name("edged")
    r = sandboxed(str(edged), "demo", "--duration", "4", timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "node said offline" in r.stdout
