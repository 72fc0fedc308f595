"""What a config pushed by `config.set` may not do (edged/config/pushed.py, and the scope
`update` in edged/commands/admin.py): the holder of the scope `config` gets the node's
configuration, not its secrets, its trust anchors, its files or its code."""

import asyncio
import errno
import json
import os
import sqlite3
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.commands.admin import Admin
from edged.commands.spec import SIGNED_SCOPES
from edged.config import load_config
from edged.config import probation as probation_module
from edged.config.probation import Probation
from edged.errors import CommandError
from edged.security.signing import public_key_text
from tests.drivers.can.support import muxed_dbc
from tests.helpers.disk import fifo_let_go_after
from tests.helpers.nodes import write_config

PASSWORD = "hunter2-the-broker-password"


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _node(tmp: Path, broker: str = "") -> tuple[Admin, dict[str, Any]]:
    """A node whose config holds an ops key (`config`) and, `broker`, more [broker] lines."""
    key = public_key_text(Ed25519PrivateKey.generate().public_key())
    path = write_config(
        tmp,
        1883,
        gps=False,
        broker=broker,
        extra=f'[[security.keys]]\nid = "ops"\npublic_key = "{key}"\nscopes = ["config"]\n',
    )
    life = SimpleNamespace(
        config=load_config(path),
        config_path=path,
        config_hash="h",
        request_restart=lambda *, after_reply: None,
    )
    return Admin(life), tomllib.loads(path.read_text())  # type: ignore[arg-type]


async def _refused(admin: Admin, new: dict[str, Any], code: str = "bad_config") -> str:
    path: Path = admin.life.config_path  # type: ignore[assignment]
    before = path.read_bytes()
    with pytest.raises(CommandError) as refused:
        await admin.config_set({"config": new})
    assert refused.value.code == code, refused.value
    assert path.read_bytes() == before and not Probation(path).active
    return str(refused.value)


async def test_the_running_config_sent_back_is_taken(tmp_path: Path) -> None:
    """No limit refuses what is already running (config.get's config, secrets and all)."""
    pw = _private(tmp_path / "mqtt.password", PASSWORD)
    admin, new = _node(tmp_path, f'password_file = "{pw}"')
    await admin.config_set({"config": new})
    assert Probation(admin.life.config_path).active  # type: ignore[arg-type]


async def test_the_password_file_cannot_be_pointed_at_another_secret(tmp_path: Path) -> None:
    """Else the node sends that secret (its TLS key) as its password, to a broker named in
    the same config.set."""
    key = _private(tmp_path / "node.key", "-----BEGIN PRIVATE KEY-----\nsecret\n")
    admin, new = _node(tmp_path)
    new["broker"].update(host="broker.attacker.example", password_file=str(key))
    assert "broker.password_file" in await _refused(admin, new)


async def test_a_secret_file_named_already_cannot_be_changed(tmp_path: Path) -> None:
    pw = _private(tmp_path / "mqtt.password", PASSWORD)
    other = _private(tmp_path / "wifi.passphrase", "a passphrase")
    admin, new = _node(tmp_path, f'password_file = "{pw}"')
    new["broker"]["password_file"] = str(other)
    assert "broker.password_file" in await _refused(admin, new)


async def test_a_dbc_that_does_not_parse_is_not_quoted_in_the_refusal(tmp_path: Path) -> None:
    """cantools quotes the line it stopped at: the one line of a password file, sent back
    to whoever pushed the config."""
    pw = _private(tmp_path / "mqtt.password", PASSWORD)
    admin, new = _node(tmp_path, f'password_file = "{pw}"')
    options = {"interface": "virtual", "dbc": str(pw)}
    new["drivers"] = [{"name": "can", "driver": "can.bus", "options": options}]
    message = await _refused(admin, new)
    assert "line 1, column 1" in message and PASSWORD not in message


@pytest.mark.parametrize(
    ("key", "place"),
    [("path", "/proc/edged/outbox.sqlite"), ("state_path", "/sys/kernel/state.sqlite")],
)
async def test_a_store_where_the_node_cannot_write_is_refused(
    tmp_path: Path, key: str, place: str
) -> None:
    """Taken, the node could not open its outbox at the next start: a restart loop without
    taps, doors or panic recorded until the probation's rollback (120 s by default)."""
    admin, new = _node(tmp_path)
    new["outbox"][key] = place
    assert f"outbox.{key}: the node cannot write at {place}" in await _refused(admin, new)


async def test_an_outbox_named_as_the_state_store_is_refused(tmp_path: Path) -> None:
    """An outbox a move left (its panic unsent) named as the new state store: the node would
    set it aside under another name for the store, or keep its store; refused now."""
    left = tmp_path / "old" / "outbox.sqlite"
    left.parent.mkdir()
    db = sqlite3.connect(left)
    db.execute("CREATE TABLE msg (id INTEGER PRIMARY KEY, body BLOB)")
    db.execute("INSERT INTO msg (body) VALUES (x'00')")
    db.commit()
    db.close()
    admin, new = _node(tmp_path)
    new["outbox"]["state_path"] = str(left)
    assert f"outbox.state_path: {left} holds an outbox" in await _refused(admin, new)


async def test_a_pushed_configs_file_checks_do_not_hold_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The place probed (a file made there), a left outbox looked into: on a slow card or a
    hung mount the taps, doors and panic waited on the loop meanwhile."""
    from edged.config import pushed

    def slow(path: Path) -> str | None:
        time.sleep(0.5)
        return None

    monkeypatch.setattr(pushed, "_unwritable", slow)
    admin, new = _node(tmp_path)
    new["outbox"]["state_path"] = str(tmp_path / "new" / "state.sqlite")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    try:
        await admin.config_set({"config": new})
    finally:
        ticker.cancel()
    assert ticks >= 5, ticks


async def test_a_directory_named_as_the_outbox_is_refused_as_a_directory(tmp_path: Path) -> None:
    admin, new = _node(tmp_path)
    new["outbox"]["path"] = str(tmp_path)
    assert f"outbox.path: {tmp_path} is a directory" in await _refused(admin, new)


async def test_a_full_card_refuses_the_config_and_begins_no_probation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's own write fails `ENOSPC` once `.previous` and the marker are written:
    the reply was `internal`, and the marker stayed beside the running config (its next
    start counted a probation nobody began, and rolled back to itself or committed)."""
    admin, new = _node(tmp_path)
    new["node"]["name"] = "renamed"
    path: Path = admin.life.config_path  # type: ignore[assignment]
    write = probation_module.replace_atomically

    def full_for_the_config(target: Path, *args: Any, **kwargs: Any) -> None:
        if target == path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        write(target, *args, **kwargs)

    monkeypatch.setattr(probation_module, "replace_atomically", full_for_the_config)
    assert "No space left" in await _refused(admin, new, "not_written")


@pytest.mark.parametrize("dbc", ["/dev/zero", "big.dbc", "muxed.dbc"])
async def test_a_dbc_the_node_cannot_hold_is_refused_and_the_config_kept(
    tmp_path: Path, dbc: str
) -> None:
    """A pushed DBC is read whole, cantools taking some 25 to 60 bytes per byte: a big file
    (the outbox, a log) had the node killed for memory on a 512 MB Pi Zero, /dev/zero was
    read for ever; a DBC of 300 bytes whose multiplexer lists four billion ids takes any
    memory (now a bounded child's, which fails)."""
    big = tmp_path / "big.dbc"
    with big.open("wb") as f:
        f.truncate(64 << 20)
    muxed_dbc(tmp_path, "0-4000000000")
    admin, new = _node(tmp_path)
    options = {"interface": "virtual", "dbc": str(tmp_path / dbc)}
    new["drivers"] = [{"name": "can", "driver": "can.bus", "options": options}]
    assert "drivers[0].options" in await asyncio.wait_for(_refused(admin, new), 5)


async def test_a_driver_cannot_be_made_to_read_a_secret(tmp_path: Path) -> None:
    """A route that is no JSON is refused when the driver starts: in the log, the health."""
    pw = _private(tmp_path / "mqtt.password", PASSWORD)
    admin, new = _node(tmp_path, f'password_file = "{pw}"')
    new["drivers"] = [{"name": "gps", "driver": "gps.sim", "options": {"route": str(pw)}}]
    assert "drivers[0].options.route" in await _refused(admin, new)


async def test_the_state_store_cannot_be_pointed_at_the_config_file(tmp_path: Path) -> None:
    """The node would set the file aside as a corrupt store and put a database in its
    place: no config to start from, whatever the probation."""
    admin, new = _node(tmp_path)
    new["outbox"]["state_path"] = str(admin.life.config_path)  # type: ignore[attr-defined]
    assert "outbox.state_path" in await _refused(admin, new)


async def test_the_outbox_cannot_be_pointed_at_a_key(tmp_path: Path) -> None:
    key = _private(tmp_path / "node.key", "-----BEGIN PRIVATE KEY-----\nsecret\n")
    admin, new = _node(tmp_path)
    new["outbox"]["path"] = str(key)
    assert "outbox.path" in await _refused(admin, new)
    assert key.read_text().startswith("-----BEGIN")


async def test_the_interpreter_of_updates_cannot_be_changed(tmp_path: Path) -> None:
    admin, new = _node(tmp_path)
    new.setdefault("update", {})["python"] = "/bin/sh"
    assert "update.python" in await _refused(admin, new)


async def test_tls_cannot_be_taken_off(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA")
    admin, new = _node(tmp_path, f'[broker.tls]\nca_file = "{ca}"')
    del new["broker"]["tls"]
    assert "broker.tls" in await _refused(admin, new)


async def test_the_brokers_ca_cannot_be_changed(tmp_path: Path) -> None:
    ca, theirs = tmp_path / "ca.pem", tmp_path / "theirs.pem"
    ca.write_text("a CA")
    theirs.write_text("their CA")
    admin, new = _node(tmp_path, f'[broker.tls]\nca_file = "{ca}"')
    new["broker"]["tls"]["ca_file"] = str(theirs)
    assert "broker.tls.ca_file" in await _refused(admin, new)


def _update_key() -> dict[str, Any]:
    public = public_key_text(Ed25519PrivateKey.generate().public_key())
    return {"id": "mine", "public_key": public, "scopes": ["update"]}


@pytest.mark.parametrize("signer", [None, frozenset({"config"})], ids=["unsigned", "config"])
async def test_a_key_with_the_scope_update_cannot_be_added_by_the_scope_config(
    tmp_path: Path, signer: frozenset[str] | None
) -> None:
    """The scope update is the node's code (a bundle it signs is installed): the holder of
    config alone must not give it to a key of theirs."""
    admin, new = _node(tmp_path)
    new["security"]["keys"].append(_update_key())
    token = SIGNED_SCOPES.set(signer)
    try:
        assert "update" in await _refused(admin, new, "forbidden")
    finally:
        SIGNED_SCOPES.reset(token)


async def test_a_key_holding_update_may_give_it(tmp_path: Path) -> None:
    """The rotation of a leaked update key (docs/updates.md) stays possible remotely."""
    admin, new = _node(tmp_path)
    new["security"]["keys"].append(_update_key())
    token = SIGNED_SCOPES.set(frozenset({"config", "update"}))
    try:
        await admin.config_set({"config": new})
    finally:
        SIGNED_SCOPES.reset(token)
    assert Probation(admin.life.config_path).active  # type: ignore[arg-type]


def test_the_helpers_secret_files_are_private(tmp_path: Path) -> None:
    assert os.stat(_private(tmp_path / "x", "y")).st_mode & 0o077 == 0


@pytest.mark.parametrize("place", ["releases", "sidecar"])
async def test_the_state_store_cannot_be_put_among_releases_or_the_configs_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place: str
) -> None:
    """A database named `edged.toml.pending` keeps the node on probation at every start; one
    under the releases passes for a release's file (`COMPLETE`, its python)."""
    releases = tmp_path / "releases"
    monkeypatch.setenv("EDGED_RELEASES", str(releases))
    admin, new = _node(tmp_path)
    config_path: Path = admin.life.config_path  # type: ignore[assignment]
    where = {
        "releases": releases / "9.9.9" / "COMPLETE",
        "sidecar": config_path.with_name(config_path.name + ".pending"),
    }[place]
    new["outbox"]["state_path"] = str(where)
    assert "outbox.state_path" in await _refused(admin, new)


def test_the_releases_are_where_the_launcher_keeps_them() -> None:
    from edged.config import pushed
    from edged.release import launcher

    assert pushed.DEFAULT_RELEASES == launcher.DEFAULT_RELEASES


async def test_a_secret_named_through_a_linked_config_directory_is_the_same(
    tmp_path: Path,
) -> None:
    """/etc/edged reached through a link: the file is resolved at load, not in a
    config.set; the same password file, named relatively, is no other secret."""
    real = tmp_path / "real"
    real.mkdir()
    _private(real / "mqtt.password", PASSWORD)
    (tmp_path / "link").symlink_to(real)
    admin, new = _node(real, 'password_file = "mqtt.password"')
    admin.life.config_path = tmp_path / "link" / admin.life.config_path.name  # type: ignore[attr-defined]
    await admin.config_set({"config": new})
    assert Probation(admin.life.config_path).active  # type: ignore[arg-type]


async def test_a_fifo_named_as_the_state_store_is_refused_without_waiting_on_it(
    tmp_path: Path,
) -> None:
    """Opened to read its head, a FIFO (or a serial port) waits for a writer: on the event
    loop, the node stood still, and the watchdog restarted it at each such config.set."""
    fifo = tmp_path / "pipe"
    with fifo_let_go_after(fifo, 1.5):
        admin, new = _node(tmp_path)
        new["outbox"]["state_path"] = str(fifo)
        assert "outbox.state_path" in await _refused(admin, new)  # before: taken, at 1.5 s


async def test_the_configs_own_files_are_refused_through_a_linked_config_directory(
    tmp_path: Path,
) -> None:
    """/etc/edged reached through a link: `.rolled-back` named by the real directory is the
    config's own file all the same (a rollback writes the config over it)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    admin, new = _node(real)
    name = admin.life.config_path.name  # type: ignore[attr-defined]
    admin.life.config_path = tmp_path / "link" / name  # type: ignore[attr-defined]
    new["outbox"]["state_path"] = str(real / f"{name}.rolled-back")
    assert "outbox.state_path" in await _refused(admin, new)


def _screen_locked_to(monkeypatch: pytest.MonkeyPatch, tmp: Path, origin: str) -> None:
    """The browser policy install.sh writes, at a path of the test's (not /etc/chromium)."""
    policy = tmp / "edged-kiosk.json"
    policy.write_text(json.dumps({"URLBlocklist": ["*"], "URLAllowlist": [origin]}))
    monkeypatch.setattr("edged.config.pushed.BROWSER_POLICY", policy)


async def test_the_kiosk_page_cannot_be_moved_where_the_screens_browser_blocks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, new = _node(tmp_path)
    _screen_locked_to(monkeypatch, tmp_path, "http://127.0.0.1:8080")
    new.setdefault("services", {})["kiosk"] = {"enabled": True, "port": 8181}
    why = await _refused(admin, new)
    assert "services.kiosk" in why and "http://127.0.0.1:8181" in why and "install.sh" in why


async def test_the_kiosk_page_may_move_where_the_screens_browser_allows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, new = _node(tmp_path)
    _screen_locked_to(monkeypatch, tmp_path, "http://127.0.0.1:8181")
    new.setdefault("services", {})["kiosk"] = {"enabled": True, "port": 8181}
    await admin.config_set({"config": new})


@pytest.mark.parametrize("allowed", ["http://.kiosk.lan:8181", "http://kiosk.lan:8181"])
async def test_the_kiosk_page_may_move_to_a_host_name_the_screens_browser_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: str
) -> None:
    """The exact-host filter install.sh writes, and the one an install before it wrote."""
    admin, new = _node(tmp_path)
    _screen_locked_to(monkeypatch, tmp_path, allowed)
    new.setdefault("services", {})["kiosk"] = {"enabled": True, "host": "kiosk.lan", "port": 8181}
    await admin.config_set({"config": new})


async def test_the_kiosk_page_may_move_on_a_node_whose_browser_has_no_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, new = _node(tmp_path)
    monkeypatch.setattr("edged.config.pushed.BROWSER_POLICY", tmp_path / "none.json")
    new.setdefault("services", {})["kiosk"] = {"enabled": True, "port": 8181}
    await admin.config_set({"config": new})


async def test_a_config_moving_the_outbox_is_refused_naming_both_places(tmp_path: Path) -> None:
    """The outbox's messages are not carried by a move: a rollback of the pushed config
    would leave what was queued on probation (an alarm raised offline) in the new file."""
    admin, new = _node(tmp_path)
    was = admin.life.config.outbox.path  # type: ignore[attr-defined]
    place = tmp_path / "elsewhere" / "outbox.sqlite"
    place.parent.mkdir()
    new["outbox"]["path"] = str(place)
    refused = await _refused(admin, new)
    assert f"outbox.path: a config.set does not move the outbox ({was} to {place})" in refused


async def test_a_config_naming_the_running_outbox_in_another_spelling_is_taken(
    tmp_path: Path,
) -> None:
    admin, new = _node(tmp_path)
    was = Path(admin.life.config.outbox.path).absolute()  # type: ignore[attr-defined]
    (was.parent / "sub").mkdir()
    new["outbox"]["path"] = str(was.parent / "sub" / ".." / was.name)
    await admin.config_set({"config": new})
    assert Probation(admin.life.config_path).active  # type: ignore[attr-defined]


async def test_a_database_of_another_named_as_the_state_store_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """A foreign SQLite file named as the new state store: the move set it aside as
    `replaced-…` to carry the store there, a copy left on the card by each such config.set
    (a peer pushing one a minute, the card full), never removed; refused now, untouched."""
    foreign = tmp_path / "data" / "app.sqlite"
    foreign.parent.mkdir()
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    held = foreign.read_bytes()
    admin, new = _node(tmp_path)
    new["outbox"]["state_path"] = str(foreign)
    assert f"outbox.state_path: {foreign} holds a SQLite database" in await _refused(admin, new)
    assert foreign.read_bytes() == held and os.listdir(foreign.parent) == ["app.sqlite"]


async def test_the_state_store_the_node_runs_on_may_be_named_back(tmp_path: Path) -> None:
    """A move the new place refused leaves the node on its old store, and the log says to
    put the old path back in the config: a config.set doing so is taken, though a SQLite
    database with data is there (the store in use, as the note beside the config says)."""
    admin, new = _node(tmp_path)
    cfg: Path = admin.life.config_path  # type: ignore[attr-defined]
    kept = tmp_path / "kept" / "state.sqlite"
    kept.parent.mkdir()
    db = sqlite3.connect(kept)
    db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO kv VALUES ('k', 'v')")
    db.commit()
    db.close()
    cfg.with_name(cfg.name + ".state-store").write_text(f"{kept}\n")
    new["outbox"]["state_path"] = str(kept)
    reply = await admin.config_set({"config": new})
    assert reply.get("accepted", True), reply
