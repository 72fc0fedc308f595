"""The --hw bench: its file is checked, and the daemon's config names the real devices.

The bench itself (GPIO wires, a second CAN channel, a person with cards) exists only on a
Pi; what can be checked here is that a bench file is read strictly and turns into a config
edged accepts."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from edged.config.loader import parse_config
from hil.rig.hardware import Bench, HardwareRig
from hil.rig.rig import Cards, RigError, RigSetup

EXAMPLE = Path(__file__).resolve().parents[2] / "hil" / "bench.example.toml"


def test_the_example_bench_file_is_valid() -> None:
    bench = Bench.load(EXAMPLE)
    assert bench.nfc.connstring.startswith("pn532_uart:") and bench.gpio.inputs["panic"]


def test_a_bench_without_every_card_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(EXAMPLE.read_text().replace('lost = "04deadbe"\n', ""))
    with pytest.raises(RigError, match="lost"):
        Bench.load(path)


def test_an_unknown_key_in_the_bench_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(EXAMPLE.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(ValidationError):
        Bench.load(path)


def test_the_daemon_config_uses_the_real_devices_and_pins(tmp_path: Path) -> None:
    bench = tmp_path / "bench.toml"
    bench.write_text(EXAMPLE.read_text().replace("lock = [22, 12]", "lock = [4, 12]"))
    rig = HardwareRig(tmp_path, RigSetup(profile="shuttle"), bench=bench)
    (tmp_path / "fleet.secret").write_bytes(rig.secret)
    (tmp_path / "fleet.secret").chmod(0o600)
    config = parse_config(rig.render_config(), base_dir=tmp_path)
    drivers = {d.name: d for d in config.drivers}
    assert drivers["reader"].options["connstring"] == "pn532_uart:/dev/ttyS0"
    assert drivers["gpio"].options["pin_factory"] == "default"
    assert "mock_control" not in drivers["gpio"].options
    assert drivers["gpio"].options["lock"] == {"pin": 4}
    assert drivers["gps"].options["port"] == "/dev/edged-gps"
    assert drivers["can"].options["channel"] == "can0"


def test_cards_are_the_bench_cards(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('resident = "04a1b2c3"', 'resident = "04010203"')
    path = tmp_path / "bench.toml"
    path.write_text(text)
    rig = HardwareRig(tmp_path, bench=path)
    assert rig.uid(Cards.RESIDENT) == bytes.fromhex("04010203")
    assert rig.ref(Cards.RESIDENT) == rig.refs(bytes.fromhex("04010203"))
    assert not rig.scripted_gps
