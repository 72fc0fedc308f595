"""What a config pushed by `config.set` may not do that a technician's edit may.

The scope `config` is the node's configuration, not its secrets, its trust or its code. A
config names files, and the node reads them: without these limits a holder of that scope
could have the node send one secret as another (`[broker] password_file` pointed at the
TLS key, to a broker of theirs), quote one in a refusal (a DBC that does not parse is
quoted), set a file aside as a corrupt database (the config file itself named as the state
store: the node cannot start again, whatever the probation), or run a program of their
choosing (`[update] python`). docs/security.md lists what each limit closes.

Each limit compares the pushed config with the one running, so a config.set that keeps
these keys as they are (config.get's config sent back, any other change) passes."""

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.files import head_of
from core.paths import private_files
from edged.config.kiosk import BROWSER_POLICY, browser_filter, screen_origin
from edged.config.models import EdgedConfig
from edged.config.stores import an_outbox, has_data, noted_store, same_store

DEFAULT_RELEASES = "/opt/edged/releases"  # edged.release.launcher's, not loaded by a node

SQLITE_HEADER = b"SQLite format 3\x00"


def problems(running: EdgedConfig, new: EdgedConfig, config_path: Path) -> list[str]:
    """Why `new` may not be taken by config.set (empty: it may)."""
    out = [*_secrets(running, new), *_trust(running, new)]
    if not _is(running.update.python, new.update.python):
        out.append(
            "update.python: names the program the node runs to install a release; a "
            "config.set cannot change it (a program of the sender's choosing would run as "
            "edged); change it on the device"
        )
    out += _stores(running, new, config_path)
    out += _data_files(running, new, config_path)
    out += _screen(running, new)
    return out


def _secrets(running: EdgedConfig, new: EdgedConfig) -> Iterator[str]:
    before, after = dict(private_files(running)), dict(private_files(new))
    for key in sorted(before.keys() | after.keys()):
        if not _is(before.get(key), after.get(key)):
            yield (
                f"{key}: a secret file; a config.set cannot name another ({after.get(key)}, "
                f"running: {before.get(key)}): the node could be made to use one secret as "
                "another (its TLS key sent as the broker password); lay secrets and the keys "
                "naming them on the device"
            )


def _trust(running: EdgedConfig, new: EdgedConfig) -> Iterator[str]:
    """Once the node checks its broker's certificate, a config.set keeps it checked against
    the same CA: otherwise it could send the node, and its password, to any broker."""
    was, tls = running.broker.tls, new.broker.tls
    if was is None:
        return
    if tls is None:
        yield (
            "broker.tls: a config.set cannot take TLS off (the node's password and commands "
            "would cross in clear, to any broker named); change it on the device"
        )
    elif not _is(tls.ca_file, was.ca_file):
        yield (
            f"broker.tls.ca_file: a config.set cannot change the CA the broker is checked "
            f"against ({tls.ca_file}, running: {was.ca_file}); change it on the device"
        )


def _stores(running: EdgedConfig, new: EdgedConfig, config_path: Path) -> Iterator[str]:
    """A new place for the outbox or the state store holds no other kind of file: the node
    would set it aside as a corrupt database (the config file, a key: gone from its place)."""
    places = {
        "outbox.path": (running.outbox.path, new.outbox.path),
        "outbox.state_path": (running.outbox.state_file, new.outbox.state_file),
    }
    releases = Path(os.environ.get("EDGED_RELEASES") or DEFAULT_RELEASES).absolute()
    for key, (was, path) in places.items():
        path = Path(path).absolute()
        with contextlib.suppress(OSError):  # not told: checked as a new place
            if same_store(path, Path(was)):
                continue
        if path.is_relative_to(releases) or (
            _same_dir(path.parent, config_path.absolute().parent)
            and path.name.startswith(f"{config_path.name}.")
        ):
            yield (
                f"{key}: {path} is among the node's releases or its config file's own "
                f"files ({config_path.name}.previous, .pending…): a database there would "
                "pass for one of them; name a place of data"
            )
        elif _same(path, config_path) or not _sqlite_or_absent(path):
            yield (
                f"{key}: {path} is {_kind(path)} but no SQLite database: the node would set "
                "it aside as a corrupt store; name a new file (or an outbox or state store)"
            )
        elif key == "outbox.state_path" and an_outbox(path):
            yield (
                f"{key}: {path} holds an outbox, its messages unsent (one a move left, or "
                "the node's own): the node would keep its state store where it is; name a "
                "new file"
            )
        elif key == "outbox.state_path" and has_data(path) and not _in_use(path, config_path):
            # refused rather than set aside and the copies bounded: each bound drops a file
            # of someone's, and a sender could push one a minute
            yield (
                f"{key}: {path} holds a SQLite database already (not the node's state "
                "store: another program's, a copy kept by ops): the node would set it "
                "aside to carry its state store there, a copy left on the card at each "
                "such config; name a new file, or remove that one on the device"
            )
        elif (why := _unwritable(path)) is not None:
            yield (
                f"{key}: the node cannot write at {path} ({why}): it could not start with "
                "this config (nothing recorded until the rollback); name a place on its "
                "data disk"
            )
        elif key == "outbox.path":
            yield (
                f"{key}: a config.set does not move the outbox ({was} to {path}): its "
                "messages are not carried, so what it holds unsent would stay in the file "
                "left, and a rollback would leave what was queued on probation (an alarm "
                "raised offline) in the new one; move it on the device, edged stopped "
                "(docs/security.md)"
            )


def _in_use(path: Path, config_path: Path) -> bool:
    """`path` is the state store the node runs on (the running config may name another: a
    move the new place refused leaves the node on the old one, and says to name it back)."""
    noted = noted_store(config_path)
    try:
        return noted is not None and same_store(path, noted)
    except OSError:
        return False


def _screen(running: EdgedConfig, new: EdgedConfig) -> Iterator[str]:
    """The screen's browser allows the one page install.sh found in the config (its policy,
    docs/kiosk.md): a config.set moving the page there leaves the screen on "blocked by your
    administrator", and no command can rewrite the policy. A config keeping the page where
    it runs passes, as one moving it back to the allowed address does."""
    was, kiosk = running.services.kiosk, new.services.kiosk
    if not kiosk.enabled or kiosk.port == 0:
        return
    page = screen_origin(kiosk)
    if was.enabled and screen_origin(was) == page:
        return
    try:
        allowed = json.loads(BROWSER_POLICY.read_text(encoding="utf-8")).get("URLAllowlist")
    except (OSError, ValueError, AttributeError):
        return  # no policy: no browser locked to a page here (doctor says what it finds)
    if not isinstance(allowed, list) or {page, browser_filter(kiosk)} & set(map(str, allowed)):
        return
    yield (
        f"services.kiosk: the page would move to {page}, and the screen's browser policy "
        f"({BROWSER_POLICY}) allows {', '.join(map(str, allowed))}: the screen would show "
        "'blocked by your administrator'; change host or port on the device, then run "
        "systemd/install.sh again"
    )


def _data_files(running: EdgedConfig, new: EdgedConfig, config_path: Path) -> Iterator[str]:
    """A file a driver reads (a DBC, a route, a CAN log) is no secret of the node's: what
    does not parse is quoted in the refusal, the log, the health."""
    secrets = [p for _, p in (*private_files(running), *private_files(new))]
    for i, driver in enumerate(new.drivers):
        if driver._settings is None:
            continue
        for key, path in _paths(driver._settings, f"drivers[{i}].options."):
            if not path.is_file():
                continue
            if any(_same(path, s) for s in (*secrets, config_path)) or _private(path):
                yield (
                    f"{key}: {path} is a file kept private (mode 600, a secret's); a "
                    "config.set cannot have a driver read it: make the file readable by "
                    "others if it holds no secret"
                )


def _same_dir(a: Path, b: Path) -> bool:
    """One directory, named alike or through a link (/etc/edged linked to the data disk):
    the config's own files are found by their names in it."""
    return a == b or a.resolve() == b.resolve()


def _paths(model: BaseModel, prefix: str) -> Iterator[tuple[str, Path]]:
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        if isinstance(value, Path):
            yield f"{prefix}{name}", value
        elif isinstance(value, BaseModel):
            yield from _paths(value, f"{prefix}{name}.")


def _private(path: Path) -> bool:
    try:
        return not stat.S_IMODE(path.stat().st_mode) & (stat.S_IRGRP | stat.S_IROTH)
    except OSError:
        return False


def _is(a: Path | None, b: Path | None) -> bool:
    """The same file named: one path, or two ways to one file (a config directory reached
    through a link is resolved at load, not in a config.set)."""
    return a == b or (a is not None and b is not None and _same(a, b))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a file"
    return "a directory" if stat.S_ISDIR(mode) else "a file"


def _unwritable(path: Path) -> str | None:
    """Why the node could not create a file where `path` goes (None: it can): a file made
    and removed in the nearest directory there is (the node makes the missing ones), as
    the node itself, so a place on /proc or /sys, a read-only mount or another owner's
    directory is refused now rather than leave the node unable to start until the
    rollback."""
    place = path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        with tempfile.TemporaryFile(dir=place):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _sqlite_or_absent(path: Path) -> bool:
    try:
        head = head_of(path, len(SQLITE_HEADER))
    except OSError:  # a FIFO, a device, a directory, unreadable: not a store to replace
        return False
    return head in (None, b"", SQLITE_HEADER)
