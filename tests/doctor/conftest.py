"""Brokers, certificates, a GPS on a pty and a way to drop root, for the doctor's checks."""

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hil.gps.emulator import NmeaEmulator
from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT, write_config

SCRIPT = ROOT / "config" / "mosquitto" / "fleet-certs.sh"
LOGS = ROOT / "hil" / "gps" / "logs"
NOBODY = 65534
T = TypeVar("T")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet CA with a node certificate, and a rogue CA with its own node certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to issue the test certificates")
    d = tmp_path_factory.mktemp("pki")
    for where, args in (
        (d, ["ca"]),
        (d, ["node", "test", "a"]),
        (d / "rogue", ["ca"]),
        (d / "rogue", ["node", "test", "a"]),
    ):
        subprocess.run(["bash", str(SCRIPT), str(where), *args], check=True, capture_output=True)
    return d


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """Certificates required, the CN as username (as config/mosquitto/mosquitto.conf)."""
    extra = (
        "allow_anonymous false\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'broker.crt'}\nkeyfile {pki / 'broker.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    m = Mosquitto(tmp_path, extra=extra).start()
    yield m
    m.stop()


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([exe, "-c", "-b", str(passwd), "test.a", "correct horse"], check=True)
    m = Mosquitto(tmp_path, extra=f"allow_anonymous false\npassword_file {passwd}\n").start()
    yield m
    m.stop()


@pytest.fixture
def gps(tmp_path: Path) -> Iterator[NmeaEmulator]:
    """A u-blox receiver replaying its log on a pty behind tmp_path/gps0."""
    with NmeaEmulator(LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0", speed=20) as emu:
        yield emu


@pytest.fixture
def silent_pty() -> Iterator[str]:
    """A serial device that never says anything (receiver without power)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield path
    os.close(master)


def config(tmp_path: Path, port: int, *, drivers: str = "", **kw: Any) -> Path:
    """A node config for the test broker; `drivers` adds [[drivers]] tables."""
    return write_config(tmp_path, port, fleet="test", node="a", extra=drivers, **kw)


def serial_gps(port: str, name: str = "gps", **options: Any) -> str:
    extra = "".join(f"{k} = {v!r}\n" for k, v in options.items())
    return (
        f'\n[[drivers]]\nname = "{name}"\ndriver = "gps.nmea-serial"\n'
        f'[drivers.options]\nport = "{port}"\n{extra}'
    )


def doctor(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`edged doctor` as the technician runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edged", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def as_nobody(fn: Callable[[], T]) -> T:
    """Run `fn` in a forked child that dropped root for nobody: permission checks then mean
    something even in CI, which runs as root. The child returns its result pickled."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            data = pickle.dumps(fn())
        except BaseException as exc:
            data, code = pickle.dumps(exc), 1
        with os.fdopen(write, "wb") as out:
            out.write(data)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    result = pickle.loads(data)
    if os.waitstatus_to_exitcode(status) != 0:
        raise result
    return result  # type: ignore[no-any-return]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory others may enter (pytest's tmp_path is private to root): for checks that
    run as nobody and must reach the file they are about."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="doctor-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
