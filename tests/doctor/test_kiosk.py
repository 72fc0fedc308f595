"""The kiosk port: free, held by the running edged, or taken by another program (named)."""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.config.kiosk import KioskConfig
from edged.doctor import Status
from edged.doctor.kiosk import (
    EMOJI_FONT,
    check_browser_policy,
    check_emoji_font,
    check_kiosk,
    listeners,
)
from tests.doctor.conftest import config, doctor
from tests.helpers.broker import free_port
from tests.helpers.netns import ipv6_off, python_in
from tests.helpers.nodes import ROOT
from tools.kiosk_policy import kiosk_policy


@pytest.fixture
def web_server() -> Iterator[tuple[int, int]]:
    """Another program on a port: (port, pid) of a `python -m http.server` on loopback."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not listeners(port):
            assert proc.poll() is None and time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(5)


def test_a_free_port_is_ok() -> None:
    port = free_port()
    (line,) = check_kiosk(KioskConfig(port=port), [])
    assert line.status is Status.OK
    assert line.detail == f"127.0.0.1:{port} is free: the page will be served there"


def test_a_disabled_kiosk_has_no_line() -> None:
    assert check_kiosk(KioskConfig(enabled=False), []) == []


def test_a_port_another_program_holds_fails_and_names_it(web_server: tuple[int, int]) -> None:
    port, pid = web_server
    (line,) = check_kiosk(KioskConfig(port=port), [])
    assert line.status is Status.FAIL
    assert f"127.0.0.1:{port} is taken by http.server {port} --bind (pid {pid})" in line.detail
    assert "[services.kiosk] port" in line.advice


def test_a_port_held_by_the_running_edged_is_not_a_fault(web_server: tuple[int, int]) -> None:
    port, pid = web_server  # stands for the service: its pid runs with this config
    (line,) = check_kiosk(KioskConfig(port=port), [pid])
    assert line.status is Status.SKIP
    assert f"served by the running edged (pid {pid})" in line.detail


def test_an_address_that_is_not_this_machines_fails_with_the_key_to_change() -> None:
    (line,) = check_kiosk(KioskConfig(host="192.0.2.7", port=free_port()), [])
    assert line.status is Status.FAIL
    assert "192.0.2.7 is not an address of this machine" in line.detail
    assert "[services.kiosk] host" in line.advice


def test_listeners_ignore_a_connected_socket_on_the_same_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert listeners(port) == []  # bound, not listening


def test_doctor_exits_1_when_the_kiosk_port_is_taken(
    web_server: tuple[int, int], tmp_path: Path
) -> None:
    port, pid = web_server
    # the extra lines land in [services.kiosk], right after `enabled`
    cfg = config(tmp_path, free_port(), kiosk=True, drivers=f"port = {port}")
    done = doctor("-c", str(cfg), "--timeout", "1", "--json")
    assert done.returncode == 1, done.stdout
    (line,) = [c for c in json.loads(done.stdout) if (c["section"], c["name"]) == ("kiosk", "port")]
    assert line["status"] == "fail"
    assert f"is taken by http.server {port} --bind (pid {pid})" in line["detail"]


# -- the emoji font (#21) -------------------------------------------------------------------


def test_a_missing_emoji_font_warns_with_the_package_to_install(tmp_path: Path) -> None:
    (line,) = check_emoji_font(KioskConfig(), (tmp_path / "fonts", tmp_path / "none"))
    assert line.status is Status.WARN
    assert "fonts-noto-color-emoji" in line.advice


def test_an_emoji_font_in_a_font_directory_is_ok(tmp_path: Path) -> None:
    font = tmp_path / "fonts" / "truetype" / "noto" / EMOJI_FONT
    font.parent.mkdir(parents=True)
    font.write_bytes(b"\x00\x01\x00\x00")
    (line,) = check_emoji_font(KioskConfig(), (tmp_path / "none", tmp_path / "fonts"))
    assert (line.status, line.detail) == (Status.OK, str(font))


def test_a_disabled_kiosk_needs_no_emoji_font(tmp_path: Path) -> None:
    assert check_emoji_font(KioskConfig(enabled=False), (tmp_path,)) == []


def test_doctor_reports_the_emoji_font_of_this_machine(tmp_path: Path) -> None:
    # ./dev installs fonts-noto-color-emoji: this machine's doctor finds it
    cfg = config(tmp_path, free_port(), kiosk=True, drivers=f"port = {free_port()}")
    done = doctor("-c", str(cfg), "--timeout", "1", "--json")
    lines = json.loads(done.stdout)
    (line,) = [c for c in lines if (c["section"], c["name"]) == ("kiosk", "emoji font")]
    assert line["status"] == "ok" and line["detail"].endswith(EMOJI_FONT), line


# -- the screen's browser policy -----------------------------------------------------------

TEMPLATE = ROOT / "systemd" / "chromium" / "edged-kiosk.json"


def installed_policy(directory: Path, **kiosk: object) -> Path:
    """The policy install.sh writes for a config whose [services.kiosk] is `kiosk`."""
    policy = kiosk_policy(json.loads(TEMPLATE.read_text()), {"services": {"kiosk": kiosk}})
    path = directory / "edged-kiosk.json"
    path.write_text(json.dumps(policy))
    return path


def test_a_kiosk_moved_since_install_fails_for_its_screen_is_blocked(tmp_path: Path) -> None:
    """A config.set or a hand edit moved the page: the browser still allows the old port."""
    policy = installed_policy(tmp_path, enabled=True, port=8080)
    (line,) = check_browser_policy(KioskConfig(port=8123), policy)
    assert line.status is Status.FAIL
    assert "not the page at http://127.0.0.1:8123" in line.detail
    assert "blocked by your administrator" in line.detail
    assert "install.sh again" in line.advice


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("127.0.0.1", 8123),
        ("0.0.0.0", 80),
        ("::", 8080),
        ("192.168.4.1", 8081),
        ("kiosk.local", 8080),
    ],
)
def test_the_policy_install_sh_wrote_for_the_config_is_ok(
    tmp_path: Path, host: str, port: int
) -> None:
    policy = installed_policy(tmp_path, enabled=True, host=host, port=port)
    (line,) = check_browser_policy(KioskConfig(host=host, port=port), policy)
    assert line.status is Status.OK, line


def test_a_host_name_policy_from_an_install_before_the_leading_dot_warns(tmp_path: Path) -> None:
    """`http://kiosk.local:8080` in Chromium's filter format also allows any subdomain of
    kiosk.local on that port: the page loads, and install.sh writes the exact filter."""
    policy = tmp_path / "edged-kiosk.json"
    policy.write_text(json.dumps({"URLAllowlist": ["http://kiosk.local:8080"]}))
    (line,) = check_browser_policy(KioskConfig(host="kiosk.local"), policy)
    assert line.status is Status.WARN
    assert "every subdomain of kiosk.local" in line.detail
    assert "install.sh again" in line.advice


def test_a_kiosk_without_the_policy_warns_that_its_browser_is_not_locked(tmp_path: Path) -> None:
    (line,) = check_browser_policy(KioskConfig(), tmp_path / "edged-kiosk.json")
    assert line.status is Status.WARN
    assert "not locked" in line.detail


def test_an_unreadable_policy_fails(tmp_path: Path) -> None:
    policy = tmp_path / "edged-kiosk.json"
    policy.write_text("{not json")
    (line,) = check_browser_policy(KioskConfig(), policy)
    assert line.status is Status.FAIL


def test_a_disabled_kiosk_has_no_browser_policy_line(tmp_path: Path) -> None:
    assert check_browser_policy(KioskConfig(enabled=False), tmp_path / "none.json") == []


def test_a_host_name_with_an_address_the_machine_lacks_is_ok_naming_it() -> None:
    """As the kiosk binds: `localhost` with IPv6 off is served on 127.0.0.1, not on ::1."""
    code = (
        "from edged.config.kiosk import KioskConfig\n"
        "from edged.doctor.kiosk import check_kiosk\n"
        "(line,) = check_kiosk(KioskConfig(host='localhost', port=18080), [])\n"
        "print(line.status.name, line.detail)\n"
    )
    with ipv6_off() as ns:
        out = python_in(ns, code).stdout.strip()
    assert out == (
        "OK localhost:18080 is free: the page will be served there, not on ::1 "
        "(Cannot assign requested address)"
    )
