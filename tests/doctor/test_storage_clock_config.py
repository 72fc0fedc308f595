"""Outbox space and permissions, the clock, and what an invalid config still lets run."""

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from edged.config.models import OutboxConfig
from edged.config.security import ClockConfig
from edged.doctor import Check, Status, run_checks
from edged.doctor.clock import check_clock
from edged.doctor.config import load, secrets_check
from edged.doctor.storage import check_outbox
from tests.doctor.conftest import as_nobody, config
from tests.helpers.broker import free_port
from tests.helpers.disk import mounted_tmpfs
from tests.helpers.nodes import write_venue_config

MiB = 1 << 20


def free_bytes(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


def test_an_outbox_with_room_is_ok(tmp_path: Path) -> None:
    where, space = check_outbox(OutboxConfig(path=tmp_path / "outbox.sqlite"))
    assert (where.status, space.status) == (Status.OK, Status.OK)
    assert f"{tmp_path} is writable by" in where.detail
    assert "free on" in space.detail and "64 MiB (max_bytes)" in space.detail


def test_an_outbox_directory_edged_will_create_is_ok(tmp_path: Path) -> None:
    where, _ = check_outbox(OutboxConfig(path=tmp_path / "lib" / "edged" / "outbox.sqlite"))
    assert where.status is Status.OK
    assert "does not exist yet; edged creates it" in where.detail


def test_a_disk_smaller_than_max_bytes_fails(tmp_path: Path) -> None:
    beyond = free_bytes(tmp_path) + 1024 * MiB
    _, space = check_outbox(
        OutboxConfig(path=tmp_path / "o.sqlite", max_bytes=beyond, hard_max_bytes=beyond)
    )
    assert space.status is Status.FAIL
    assert "lower [outbox] max_bytes" in space.advice


def test_a_disk_smaller_than_hard_max_bytes_warns(tmp_path: Path) -> None:
    beyond = free_bytes(tmp_path) + 1024 * MiB
    _, space = check_outbox(OutboxConfig(path=tmp_path / "o.sqlite", hard_max_bytes=beyond))
    assert space.status is Status.WARN
    assert "hard_max_bytes" in space.advice


def test_the_outbox_already_on_disk_counts_as_room(tmp_path: Path) -> None:
    (tmp_path / "o.sqlite").write_bytes(b"\0" * MiB)
    _, space = check_outbox(OutboxConfig(path=tmp_path / "o.sqlite"))
    assert "outbox 1 MiB" in space.detail


def test_an_outbox_directory_this_user_cannot_write_fails(public_dir: Path) -> None:
    (public_dir / "lib").mkdir(mode=0o755)
    outbox = OutboxConfig(path=public_dir / "lib" / "outbox.sqlite")
    checks = as_nobody(lambda: check_outbox(outbox))
    if os.geteuid() != 0:  # as a user, the same check without dropping privileges
        (public_dir / "lib").chmod(0o555)
        checks = check_outbox(outbox)
    (where,) = checks
    assert where.status is Status.FAIL
    assert "cannot write in" in where.detail
    assert "sudo install -d" in where.advice


def test_clock_lines() -> None:
    synced = check_clock(ClockConfig(), has_gps=True, synced=lambda: True)
    assert synced.status is Status.OK and "synchronised" in synced.detail
    unsynced = check_clock(ClockConfig(), has_gps=True, synced=lambda: False)
    assert unsynced.status is Status.WARN
    assert "timedatectl set-ntp true" in unsynced.advice and "GPS time" in unsynced.advice
    no_gps = check_clock(ClockConfig(), has_gps=False, synced=lambda: False)
    assert "`unsynced`" in no_gps.advice
    unknown = check_clock(ClockConfig(), has_gps=True, synced=lambda: None)
    assert unknown.status is Status.WARN and "trust_system_clock" in unknown.advice
    trusted = check_clock(ClockConfig(trust_system_clock=True), has_gps=True, synced=lambda: False)
    assert trusted.status is Status.OK


def test_secret_files_are_found_by_their_type(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o600)
    cfg = config(tmp_path, 1883, broker=f'username = "a"\npassword_file = "{secret}"')
    loaded = load(cfg)
    assert loaded.private == [("broker.password_file", secret)]
    line = next(c for c in loaded.checks if c.name == "secrets")
    assert line.status is Status.OK and "broker.password_file (600" in line.detail


def test_a_secret_this_user_cannot_read_fails(public_dir: Path) -> None:
    secret = public_dir / "pw"
    secret.write_text("x")
    secret.chmod(0o600)
    if os.geteuid() != 0:
        secret.chmod(0)
    (line,) = as_nobody(lambda: secrets_check([("broker.password_file", secret)]))
    assert line.status is Status.FAIL
    assert "cannot read it" in line.detail and "chown" in line.advice


async def test_an_invalid_section_is_skipped_and_the_valid_ones_still_run(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, free_port(), outbox="max_rows = 1", health_s=0.1)
    report = await run_checks(cfg, 1)
    assert report.exit_code == 2
    config_line = report.checks[0]
    assert config_line.status is Status.FAIL
    assert any("outbox.max_rows" in p for p in config_line.items)
    assert any("health.interval_s" in p for p in config_line.items)
    by_name = {c.name: c for c in report.checks}
    assert by_name["outbox"].status is Status.SKIP
    assert by_name["gps: answers"].status is Status.OK  # the driver table is fine
    assert by_name["broker: tcp"].status is Status.FAIL  # and so is [broker]


async def test_a_check_that_hangs_is_cut_off_and_reported() -> None:
    from edged.doctor.runner import _bounded

    async def hangs() -> list[Check]:
        await asyncio.sleep(3600)
        return []

    started = time.monotonic()
    (line,) = await _bounded([("drivers", "stuck", hangs())], 0.2)
    assert time.monotonic() - started < 1.5
    assert (line.name, line.status) == ("stuck", Status.FAIL)
    assert "did not finish within 0.2 s" in line.detail


def test_the_state_store_the_node_runs_on_is_counted_when_the_config_moved_it(
    tmp_path: Path,
) -> None:
    """A `config.set` moved `state_path` to a place the node could not write: the node
    stays on the old store (the note beside its config names it), and doctor sized the
    configured one, absent, instead of the 3 MiB the card holds."""
    old = tmp_path / "old" / "state.sqlite"
    old.parent.mkdir()
    old.write_bytes(b"SQLite format 3\x00" + b"\0" * (3 * MiB))
    note = tmp_path / "edged.toml.state-store"
    note.write_text(f"{old}\n")
    outbox = OutboxConfig(path=tmp_path / "outbox.sqlite", state_path=tmp_path / "new.sqlite")
    _, space, moved = check_outbox(outbox, tmp_path / "edged.toml")
    assert "outbox 3 MiB" in space.detail
    assert moved.status is Status.WARN and str(old) in moved.detail


def test_an_outbox_a_move_left_on_the_card_is_named_with_its_size(tmp_path: Path) -> None:
    """The note beside the config names the outbox a moved `[outbox] path` left, its
    unsent messages in it: doctor says where, how big, how many, rather than nothing."""
    left = tmp_path / "old" / "outbox.sqlite"
    left.parent.mkdir()
    db = sqlite3.connect(left)
    db.execute("CREATE TABLE msg (id INTEGER PRIMARY KEY, payload BLOB)")
    db.executemany("INSERT INTO msg (payload) VALUES (?)", [(b"x" * 100,)] * 7)
    db.commit()
    db.close()
    (tmp_path / "edged.toml.outbox").write_text(f"{tmp_path / 'outbox.sqlite'}\n{left}\n")
    *_, line = check_outbox(OutboxConfig(path=tmp_path / "outbox.sqlite"), tmp_path / "edged.toml")
    assert (line.name, line.status) == ("outbox left", Status.WARN)
    assert str(left) in line.detail and "7 message(s) unsent" in line.detail


def test_a_disk_that_holds_the_caps_but_not_the_files_beside_them_warns(tmp_path: Path) -> None:
    """A 2 MiB state dir with caps of 1 and 1.5 MiB: the outbox fits, its WAL is counted in
    the caps, but the state store, the tap journal and the counters need room too."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        outbox = OutboxConfig(
            path=disk / "outbox.sqlite", max_bytes=MiB, hard_max_bytes=3 * MiB // 2
        )
        _, space = check_outbox(outbox)
    assert space.status is Status.WARN, space.detail
    assert "state store, tap journal and counters" in space.detail


def clear_broker_lines(tmp_path: Path, host: str) -> list[Check]:
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        f'[node]\nfleet = "creuse"\nid = "shuttle-07"\nprofile = "shuttle"\n'
        f'[broker]\nhost = "{host}"\nusername = "creuse.shuttle-07"\n'
        f'[outbox]\npath = "{tmp_path / "outbox.sqlite"}"\n'
    )
    return [c for c in load(cfg).checks if c.name == "broker_tls"]


def test_a_remote_broker_without_tls_is_a_config_warning_that_says_to_add_tls(
    tmp_path: Path,
) -> None:
    (line,) = clear_broker_lines(tmp_path, "broker.fleet.example")
    assert line.status is Status.WARN and "[broker.tls]" in line.advice


def test_a_broker_on_loopback_without_tls_is_no_warning(tmp_path: Path) -> None:
    assert clear_broker_lines(tmp_path, "127.0.0.1") == []


def test_a_venue_door_without_rooms_is_a_config_warning(tmp_path: Path) -> None:
    outbox = f'[outbox]\npath = "{tmp_path / "outbox.sqlite"}"\n'
    cfg = write_venue_config(tmp_path, extra=outbox)
    (line,) = [c for c in load(cfg).checks if c.name == "venue_rooms"]
    assert line.status is Status.WARN and "rooms = [" in line.advice


def test_a_venue_room_the_lists_cannot_hold_fails_the_config_line(tmp_path: Path) -> None:
    outbox = f'[outbox]\npath = "{tmp_path / "outbox.sqlite"}"\n'
    cfg = write_venue_config(tmp_path, extra=outbox, access='rooms = ["Salle 1"]\n')
    config_line = load(cfg).checks[0]
    assert config_line.status is Status.FAIL
    assert any("services.access.rooms[0]" in p and "lowercase" in p for p in config_line.items)
