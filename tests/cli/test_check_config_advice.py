"""`edged check-config`, the real CLI: a broker reached over the network without TLS is
warned about (the password in clear, unsigned commands open to whoever is on the path),
never refused (edged.config.advice)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edged.config.advice import is_local_host
from tests.helpers.nodes import write_venue_config

NODE = '[node]\nfleet = "creuse"\nid = "shuttle-07"\nprofile = "shuttle"\n'
CREDENTIALS = 'username = "creuse.shuttle-07"\npassword_file = "pw"\n'


def check_config(tmp_path: Path, broker: str) -> subprocess.CompletedProcess[str]:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-s3cret-s3cret\n")
    pw.chmod(0o600)
    (tmp_path / "ca.crt").write_text("not read by check-config\n")
    cfg = tmp_path / "n.toml"
    cfg.write_text(NODE + "[broker]\n" + broker)
    return run_check_config(cfg)


def run_check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    """`edged check-config CFG` as a process: the CLI a person runs."""
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )


def test_a_password_sent_in_clear_to_a_remote_broker_is_warned_and_says_to_add_tls(
    tmp_path: Path,
) -> None:
    out = check_config(tmp_path, 'host = "broker.fleet.example"\nport = 1883\n' + CREDENTIALS)
    assert "warning" in out.stderr and "[broker.tls]" in out.stderr
    assert "password" in out.stderr and "unsigned commands" in out.stderr


def test_a_remote_broker_without_tls_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    out = check_config(tmp_path, 'host = "broker.fleet.example"\n' + CREDENTIALS)
    assert out.returncode == 0 and out.stdout.strip().endswith(": ok")


def test_a_remote_broker_without_credentials_or_tls_is_warned_too(tmp_path: Path) -> None:
    out = check_config(tmp_path, 'host = "10.0.0.5"\n')
    assert "unsigned commands" in out.stderr and "password" not in out.stderr


def test_a_remote_broker_over_tls_gets_no_warning(tmp_path: Path) -> None:
    tls = '[broker.tls]\nca_file = "ca.crt"\n'
    out = check_config(tmp_path, 'host = "broker.fleet.example"\nport = 8883\n' + CREDENTIALS + tls)
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.1.1", "::1"])
def test_a_broker_on_this_machine_in_plain_mqtt_gets_no_warning(tmp_path: Path, host: str) -> None:
    out = check_config(tmp_path, f'host = "{host}"\n' + CREDENTIALS)
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize(
    "host",
    [
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "localhost-broker",
        "0.0.0.0",
        "192.168.1.10",
        "fe80::1",
        "2001:db8::1",
        "",
    ],
)
def test_a_name_that_only_looks_local_is_not_local(host: str) -> None:
    assert not is_local_host(host)


@pytest.mark.parametrize("host", ["LOCALHOST", "localhost.", "broker.localhost", "[::1]"])
def test_the_spellings_of_this_machine_are_local(host: str) -> None:
    assert is_local_host(host)


def venue_check(tmp_path: Path, access: str) -> subprocess.CompletedProcess[str]:
    return run_check_config(write_venue_config(tmp_path, access=access))


def test_a_venue_without_rooms_is_warned_that_every_fleet_booking_opens_it(
    tmp_path: Path,
) -> None:
    out = venue_check(tmp_path, "")
    assert out.returncode == 0 and ": ok" in out.stdout
    assert "warning" in out.stderr and "rooms" in out.stderr and "any room" in out.stderr


def test_a_venue_naming_its_rooms_gets_no_warning(tmp_path: Path) -> None:
    out = venue_check(tmp_path, 'rooms = ["ahun-salle-1"]\n')
    assert (out.returncode, out.stderr) == (0, "")


def test_a_venue_room_the_lists_cannot_hold_is_refused_saying_how_to_write_it(
    tmp_path: Path,
) -> None:
    out = venue_check(tmp_path, 'rooms = ["Ahun salle 1"]\n')
    assert out.returncode != 0 and "services.access.rooms[0]" in out.stderr
    assert "write it exactly as dispatch names it in the lists" in out.stderr


def gpio_section(beams_door: str) -> str:
    return (
        '[[drivers]]\nname = "gpio"\ndriver = "gpio.gpiozero"\n[drivers.options]\n'
        'pin_factory = "mock"\ndoors = [{ name = "entrance", pin = 17 }]\n'
        f'beams = [{{ door = "{beams_door}", outer = 5, inner = 6 }}]\n'
    )


def test_beams_whose_door_names_no_contact_of_their_driver_are_warned_they_are_not_gated(
    tmp_path: Path,
) -> None:
    # the contact of the beams' door gates them (docs/drivers.md): a typo leaves a venue's
    # beams counting hands waved through them behind the shut door
    rooms = 'rooms = ["ahun-salle-1"]\n'
    out = run_check_config(write_venue_config(tmp_path, access=rooms, extra=gpio_section("front")))
    assert out.returncode == 0 and ": ok" in out.stdout
    assert "warning" in out.stderr and "'front'" in out.stderr and "'entrance'" in out.stderr
    same = tmp_path / "same"
    same.mkdir()
    out = run_check_config(write_venue_config(same, access=rooms, extra=gpio_section("entrance")))
    assert (out.returncode, out.stderr) == (0, "")


def shuttle_with_beams(tmp_path: Path, door: str) -> Path:
    """config/shuttle.toml (its GPIO driver has no door contact; its doors are on the CAN
    bus) with counting beams at `door`."""
    shipped = Path(__file__).resolve().parents[2] / "config"
    for linked in ("routes", "can"):
        (tmp_path / linked).symlink_to(shipped / linked)
    text = (shipped / "shuttle.toml").read_text(encoding="utf-8")
    beams = '# beams = [{ door = "front"'
    assert beams in text
    cfg = tmp_path / "shuttle.toml"
    cfg.write_text(text.replace(beams, f'beams = [{{ door = "{door}"'), encoding="utf-8")
    return cfg


def test_beams_at_a_door_on_the_can_bus_are_gated_by_it_and_get_no_warning(
    tmp_path: Path,
) -> None:
    out = run_check_config(shuttle_with_beams(tmp_path, "front"))
    assert (out.returncode, out.stderr) == (0, "")


def test_beams_naming_neither_a_contact_nor_a_door_on_the_can_bus_are_warned(
    tmp_path: Path,
) -> None:
    out = run_check_config(shuttle_with_beams(tmp_path, "middle"))
    assert out.returncode == 0 and ": ok" in out.stdout
    assert "'middle'" in out.stderr and "'front', 'rear'" in out.stderr
    assert "[services.vehicle.doors]" in out.stderr


def test_beams_gated_by_a_door_whose_pgn_the_can_driver_leaves_out_are_warned(
    tmp_path: Path,
) -> None:
    """The beams' door is on the CAN bus, but the CAN driver decodes only the PGNs in its
    `pgns`, without DC2's (64933): the gate never heard the door, every walk counted, and
    check-config called the beams gated."""
    cfg = shuttle_with_beams(tmp_path, "front")
    text = cfg.read_text(encoding="utf-8")
    interval = "min_interval_s = 0.1           # about one event per parameter group"
    assert text.count(interval) == 1
    cfg.write_text(text.replace(interval, "pgns = [65265]\n" + interval), encoding="utf-8")
    out = run_check_config(cfg)
    assert out.returncode == 0 and ": ok" in out.stdout
    assert "'front'" in out.stderr and "PGN 64933" in out.stderr, out.stderr
    assert "add 64933 to the CAN driver's `pgns`" in out.stderr, out.stderr


def test_beams_gated_by_a_door_whose_pgn_the_can_driver_decodes_get_no_warning(
    tmp_path: Path,
) -> None:
    cfg = shuttle_with_beams(tmp_path, "front")
    text = cfg.read_text(encoding="utf-8")
    interval = "min_interval_s = 0.1           # about one event per parameter group"
    cfg.write_text(text.replace(interval, "pgns = [65265, 64933]\n" + interval), encoding="utf-8")
    out = run_check_config(cfg)
    assert (out.returncode, out.stderr) == (0, "")
