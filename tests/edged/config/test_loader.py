import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from drivers.can.options import CanDecodeOptions
from edged.cli.main import EXIT_CONFIG
from edged.config import load_config, parse_config
from edged.config.loader import locate

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "config").glob("*.toml"))

MINIMAL = """
[node]
fleet = "creuse"
id = "bus-1"
profile = "shuttle"
"""


def problems(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.toml", base_dir=base_dir)
    return info.value.problems


def test_examples_exist_for_every_profile() -> None:
    assert {p.stem for p in EXAMPLES} >= {"shuttle", "truck", "venue"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_passes(path: Path) -> None:
    config = load_config(path)
    assert config.node.profile.value == path.stem


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_check_config_command_accepts_every_example(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_check_config_exits_2_and_names_the_key_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "\n[broker]\nport = 70000\n")
    done = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "broker.port" in done.stderr and "(line 8)" in done.stderr


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.broker.protocol == "5"
    assert config.broker.prefix == "rnst/v1"
    assert config.health.interval_s == 30


def test_unknown_key_is_an_error_not_ignored() -> None:
    (msg,) = problems(MINIMAL + 'colour = "red"\n')
    assert msg.startswith("node.colour: unknown key")


def test_missing_node_section_is_named() -> None:
    assert problems("")[0].startswith("node: required key is missing")


def test_every_problem_is_reported_at_once() -> None:
    text = """
[node]
fleet = "Has Space"
id = "ok"
profile = "bus"
[broker]
port = 0
keepalive_s = 1
"""
    found = problems(text)
    assert [p.split(":")[0] for p in found] == [
        "node.fleet",
        "node.profile",
        "broker.port",
        "broker.keepalive_s",
    ]


def test_bad_toml_says_where() -> None:
    (msg,) = problems("[node\nfleet=1")
    assert "not valid TOML" in msg and "line 1" in msg


def test_unknown_driver_lists_the_known_ones() -> None:
    text = MINIMAL + '\n[[drivers]]\nname = "gps"\ndriver = "gps.warp"\n'
    (msg,) = problems(text)
    assert "drivers[0].driver" in msg and "gps.sim" in msg and "(line 9)" in msg


def test_driver_options_are_validated_by_the_driver(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[drivers]]\nname = "gps"\ndriver = "gps.sim"\n'
        '[drivers.options]\nroute = "nowhere.json"\nwarp = 9\n'
    )
    found = problems(text, base_dir=tmp_path)
    assert any(p.startswith("drivers[0].options.route") and "no such file" in p for p in found)
    assert any(p.startswith("drivers[0].options.warp: unknown key") for p in found)


def test_driver_problems_are_reported_with_the_other_problems() -> None:
    text = MINIMAL.replace('"shuttle"', '"bus"') + (
        '\n[[drivers]]\nname = "gps"\ndriver = "gps.warp"\n'
    )
    assert len(problems(text)) == 2


def test_duplicate_driver_names_are_refused() -> None:
    route = ROOT / "config" / "routes" / "creuse-shuttle.json"
    block = (
        f'\n[[drivers]]\nname = "gps"\ndriver = "gps.sim"\n[drivers.options]\nroute = "{route}"\n'
    )
    assert any("unique" in p for p in problems(MINIMAL + block + block))


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "node.toml"
    file.write_text(MINIMAL + '\n[outbox]\npath = "data/outbox.sqlite"\n')
    assert load_config(file).outbox.path == tmp_path / "data" / "outbox.sqlite"


def test_caps_must_be_ordered() -> None:
    found = problems(MINIMAL + "\n[outbox]\nmax_rows = 1000\nhard_max_rows = 10\n")
    assert any("hard_max_rows must be at least max_rows" in p for p in found)


def test_the_state_store_cannot_be_the_outbox_file() -> None:
    """One file for both: the state store, carried there, set the outbox aside (its unsent
    messages), then the two exclusive connections locked each other out at every start."""
    found = problems(MINIMAL + '\n[outbox]\npath = "/d/o.sqlite"\nstate_path = "/d/o.sqlite"\n')
    assert any("state_path" in p and "outbox" in p for p in found), found


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_binary_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "junk.toml"
    file.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(file)


def test_locate_finds_keys_in_arrays_of_tables() -> None:
    text = '[[drivers]]\nname = "a"\n[[drivers]]\nname = "b"\n[drivers.options]\nx = 1\n'
    assert locate(text, ("drivers", 1, "options", "x")) == 6
    assert locate(text, ("drivers", 0, "name")) == 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems


def test_a_password_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    (msg,) = problems(MINIMAL + f'\n[broker]\npassword_file = "{secret}"\n')
    assert msg.startswith("broker.password_file") and f"chmod 600 {secret}" in msg


def test_a_private_password_file_is_accepted(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = parse_config(MINIMAL + f'\n[broker]\npassword_file = "{secret}"\n')
    assert config.broker.password_file == secret


def deep(form: str, depth: int) -> str:
    """MINIMAL plus one key nested `depth` levels deep, written four ways."""
    if form == "arrays":
        return MINIMAL + "[services.kiosk]\nx = " + "[" * depth + "]" * depth + "\n"
    if form == "inline tables":
        return MINIMAL + "[services.kiosk]\nx = " + "{a = " * depth + "1" + "}" * depth + "\n"
    if form == "dotted keys":
        return MINIMAL + "[services.kiosk]\n" + ".".join(["a"] * depth) + " = 1\n"
    return MINIMAL + "[" + ".".join(["a"] * depth) + "]\nx = 1\n"  # a table header


FORMS = ["arrays", "inline tables", "dotted keys", "table header"]


@pytest.mark.parametrize("depth", [500, 5000])
@pytest.mark.parametrize("form", FORMS)
def test_deeply_nested_toml_is_a_config_problem_not_a_crash(form: str, depth: int) -> None:
    (problem,) = problems(deep(form, depth))
    assert "levels deep" in problem


@pytest.mark.parametrize(
    ("command", "form", "status"),
    [("check-config", "arrays", 2), ("run", "table header", EXIT_CONFIG)],
)
def test_deeply_nested_toml_exits_as_any_config_problem_with_a_message(
    tmp_path: Path, command: str, form: str, status: int
) -> None:
    """check-config says 2; run says 78, the status systemd does not restart on."""
    bad = tmp_path / "deep.toml"
    bad.write_text(deep(form, 500))
    argv = [str(bad)] if command == "check-config" else ["-c", str(bad)]
    done = subprocess.run(
        [sys.executable, "-m", "edged", command, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == status, done.stderr
    assert "levels deep" in done.stderr and "Traceback" not in done.stderr


def test_a_config_nested_as_deep_as_the_limit_is_judged_on_its_keys() -> None:
    """The limit is on nesting, not a refusal of nested values a model may take."""
    text = (
        MINIMAL
        + '[[drivers]]\nname = "g"\ndriver = "gps.sim"\n[drivers.options]\nx = '
        + "[" * 20
        + "]" * 20
        + "\n"
    )
    assert not any("levels deep" in p for p in problems(text))


# -- [services.occupancy] reset_at = "never" (#24) --------------------------------------------


def test_the_daily_occupancy_reset_can_be_turned_off_in_toml() -> None:
    config = parse_config(MINIMAL + '[services.occupancy]\nreset_at = "never"\n')
    assert config.services.occupancy.reset_time is None


def test_the_daily_occupancy_reset_is_at_3_when_left_out() -> None:
    config = parse_config(MINIMAL)
    assert str(config.services.occupancy.reset_time) == "03:00:00"


@pytest.mark.parametrize("bad", ['""', '"Never"', '"none"', "false", "0"])
def test_another_way_to_say_never_is_a_config_error_naming_never(bad: str) -> None:
    (problem,) = problems(MINIMAL + f"[services.occupancy]\nreset_at = {bad}\n")
    assert "reset_at" in problem


@pytest.mark.parametrize("bad", ["-1", "86401", "nan", "inf", '"10m"', "[]"])
def test_a_trip_end_grace_out_of_range_or_not_seconds_is_a_config_error_naming_it(bad: str) -> None:
    (problem,) = problems(MINIMAL + f"[services.occupancy]\ntrip_end_grace_s = {bad}\n")
    assert "trip_end_grace_s" in problem


def test_the_trip_end_grace_is_ten_minutes_when_left_out() -> None:
    assert parse_config(MINIMAL).services.occupancy.trip_end_grace_s == 600


CAN_REPLAY = (
    '\n[[drivers]]\nname = "can"\ndriver = "can.replay"\n[drivers.options]\n'
    f'log = "{ROOT / "config" / "can" / "shuttle-day.log"}"\n'
)


def test_a_vehicle_signal_missing_from_the_dbc_is_named_with_the_dbc_s_own() -> None:
    text = MINIMAL + CAN_REPLAY + '\n[services.vehicle]\nspeed = "CCVS1.WheelBasedVehicleSped"\n'
    (msg,) = problems(text)
    assert msg.startswith("services.vehicle.speed: 'CCVS1.WheelBasedVehicleSped'")
    line = text.splitlines().index('speed = "CCVS1.WheelBasedVehicleSped"') + 1
    assert "WheelBasedVehicleSpeed" in msg and f"(line {line})" in msg


def test_a_vehicle_message_missing_from_the_dbc_is_named_with_the_dbc_s_own() -> None:
    text = MINIMAL + CAN_REPLAY + (
        '\n[services.vehicle.extra]\nadblue_pct = "AT1T1I.Level"\nrear = "DC2.Door3OpenStatus"\n'
    )
    (msg,) = problems(text)
    assert msg.startswith("services.vehicle.extra.adblue_pct: 'AT1T1I.Level'")
    line = text.splitlines().index('adblue_pct = "AT1T1I.Level"') + 1
    assert "CCVS1" in msg and f"(line {line})" in msg


def test_vehicle_signals_are_not_held_to_a_dbc_without_a_can_driver() -> None:
    text = MINIMAL + '\n[services.vehicle]\nspeed = "CCVS1.WheelBasedVehicleSped"\n'
    assert parse_config(text).services.vehicle.speed == "CCVS1.WheelBasedVehicleSped"


def test_a_bus_s_own_dbc_without_the_default_signals_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOML cannot unset a default signal: one the DBC lacks is left empty, not an error."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its compiled table
    dbc = tmp_path / "vehicle.dbc"
    dbc.write_text((ROOT / "config" / "fms.dbc").read_text().replace("CCVS1", "SPEED"))
    text = MINIMAL + CAN_REPLAY + f'dbc = "{dbc}"\n'
    assert parse_config(text).services.vehicle.speed == "CCVS1.WheelBasedVehicleSpeed"


def test_a_config_without_a_zone_on_a_system_without_tzdata_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`[node] timezone` left to its default, Europe/Paris, was never looked up at load:
    `check-config` said ok on an image without the zone database, and the node then
    failed to start in the access, occupancy or kiosk service."""
    from tests.helpers.zones import no_zone_database

    with no_zone_database(monkeypatch):
        found = problems(MINIMAL)
    assert any("node.timezone" in p and "tzdata" in p for p in found), found


def test_a_can_driver_is_told_the_door_statuses_the_node_uses() -> None:
    """Its throttle lets a change of those through at once, and no other change of DC2:
    not told, a device flipping another byte of DC2 held back the door controller's
    "open" (drivers/can/pipeline.py `PROMPT_CHANGES`)."""
    text = MINIMAL + CAN_REPLAY + '\n[services.vehicle.doors]\nfront = "DC2.Door3OpenStatus"\n'
    (driver,) = [d for d in parse_config(text).drivers if d.driver == "can.replay"]
    assert isinstance(driver.settings, CanDecodeOptions)
    assert driver.settings.door_signals == ("DC2.Door3OpenStatus",)


def test_a_config_without_a_can_driver_imports_no_python_can() -> None:
    """Telling CAN drivers the doors must not load the CAN code on a node without one: a
    venue's config read imported python-can (+2.4-2.6 MB resident here, bench.footprint)."""
    code = (
        "import sys; from pathlib import Path; from edged.config import load_config; "
        "load_config(Path('config/venue.toml')); "
        "print(sorted(m for m in ('can', 'cantools', 'drivers.can.options') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
