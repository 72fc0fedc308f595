"""Install a verified bundle beside the running release: a new venv, offline, then checked.

`<releases>/<version>/venv` is made with the running release's interpreter (the system's
python3: `--system-site-packages`, as install.sh does, for the GPIO libraries Raspberry Pi
OS ships) and filled by the bundle's own pip from the bundle's wheels, with no index and
no dependency resolution: exactly the files the manifest names. The running release is
not touched and keeps working meanwhile; pip runs niced.

Then the new release must prove it can start here before anything switches: `edged
--version` must say the manifest's version, and `edged check-config` must accept the
running config (`config_rejected` otherwise). `release.json` is written last: a release
without it is incomplete (a kill or a power cut mid-install) and is installed again.
"""

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edged.errors import CommandError
from edged.release.launcher import (
    COMPLETE,
    ReleaseTree,
    now_ms,
    optimize_flags,
    write_atomically,
)

if TYPE_CHECKING:  # the bundle's code loads when one is installed, not at every start
    from edged.release.bundle import VerifiedBundle

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 1800.0
CHECK_TIMEOUT_S = 120.0
OUTPUT_LIMIT = 1500


async def run(*argv: str, env: dict[str, str] | None = None, limit_s: float) -> tuple[int, str]:
    """Run a program at low priority; (exit status, the end of its output)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd="/",
    )
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, 10)
    try:
        async with asyncio.timeout(limit_s):
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):  # said as what ran past its limit
            shown = " ".join([Path(argv[0]).name, *argv[1:4]])
            raise TimeoutError(f"`{shown} …` ran past {limit_s:.0f} s and was stopped") from None
        raise
    text = out.decode(errors="replace")
    return proc.returncode or 0, text[-OUTPUT_LIMIT:]


NOT_RUN = r"/site-packages/(pip|setuptools|pkg_resources|_distutils_hack)/"
"""What the daemon never imports, so never compiled for it (as systemd/install.sh)."""


def compile_optimized(python: Path, venv: Path) -> list[str]:
    """The command that writes the .opt-2.pyc files of a release's venv: systemd runs edged
    with `python -OO` (systemd/edged.service), pip writes only the plain .pyc, and the
    running daemon cannot write any (read-only tree, PYTHONDONTWRITEBYTECODE), so without
    them every start would compile every module in memory. As systemd/install.sh does."""
    return [str(python), "-m", "compileall", "-q", "-o", "2", "-j", "0", "-x", NOT_RUN,
            str(venv / "lib")]  # fmt: skip


def clean_env() -> dict[str, str]:
    """The service's environment without what would make pip or Python look elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "EDGED_"))
    } | {"PYTHONDONTWRITEBYTECODE": "1"}


def remove_release(tree: ReleaseTree, version: str) -> None:
    """Delete a release directory (never `current` or `previous`). Blocking: some thousand
    files on an SD card take seconds; from the event loop, `remove_release_off_loop`."""
    if version in (tree.link("current"), tree.link("previous")):
        raise ValueError(f"release {version} is in use")
    path = tree.path(version)
    if path.exists():
        for root, dirs, _ in os.walk(path):  # read-only trees (install.sh's) first made writable
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)


async def remove_release_off_loop(tree: ReleaseTree, version: str) -> None:
    """`remove_release` in a worker thread: the loop decides taps meanwhile."""
    await asyncio.to_thread(remove_release, tree, version)


async def check_release(python: Path, version: str, config: Path | None) -> None:
    """The release starts here (`edged --version` says its version) and takes the running
    config (`edged check-config`): run at install, and again just before the switch, since
    the config may have changed in between (`config.set`)."""
    env = clean_env()
    flags = optimize_flags()  # as the launcher will start it: with this daemon's -OO
    code, out = await run(
        str(python), *flags, "-P", "-m", "edged", "--version", env=env, limit_s=CHECK_TIMEOUT_S
    )
    if code != 0 or out.strip() != f"edged {version}":
        raise CommandError(
            "install_failed", f"release {version} does not start (`edged --version`): {out}"
        )
    if config is not None:
        code, out = await run(
            str(python), *flags, "-P", "-m", "edged", "check-config", str(config),
            env=env, limit_s=CHECK_TIMEOUT_S,
        )  # fmt: skip
        if code != 0:
            raise CommandError(
                "config_rejected", f"release {version} rejects the running config: {out}"
            )


def installed_from(tree: ReleaseTree, version: str, raw_manifest: bytes) -> bool:
    """Whether `version` is completely installed from this very manifest: then it is kept
    (it may be `previous`, which an update back to it must not delete, nor fail on)."""
    if not tree.complete(version):
        return False
    try:
        record = json.loads((tree.path(version) / COMPLETE).read_bytes())
    except (OSError, ValueError):
        return False
    digest = hashlib.sha256(raw_manifest).hexdigest()
    return isinstance(record, dict) and record.get("manifest_sha256") == digest


async def install(
    tree: ReleaseTree, bundle: "VerifiedBundle", python: Path, config: Path | None
) -> Path:
    """Install `bundle` as `<releases>/<version>`; returns the release directory."""
    manifest = bundle.manifest
    version = manifest.version
    dest = tree.path(version)
    if dest.exists():
        if installed_from(tree, version, bundle.raw_manifest):
            log.info("release %s: already installed from this bundle", version)
            await check_release(tree.python(version), version, config)
            return dest
        if version in (tree.link("current"), tree.link("previous")):
            raise CommandError(
                "in_use",
                f"release {version} is installed here from another bundle and is in use (the "
                "fallback): it cannot be replaced",
            )
        log.info("release %s: removing an unfinished install", version)
        await remove_release_off_loop(tree, version)
    try:
        await _install_new(tree, bundle, python, config)
    except OSError as exc:  # a refusal that says why; the manager removes what was written
        raise install_error(exc, version, dest) from exc
    return dest


async def _to_the_end(
    extract: "Callable[[VerifiedBundle, Path, threading.Event], list[Path]]",
    bundle: "VerifiedBundle",
    dest: Path,
) -> list[Path]:
    """`extract` in a worker thread, and when this is cancelled, the thread stopped and
    waited for before the cancel goes on: the manager then removes the release directory
    (or an install after it makes it again), which the thread must no longer write into."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(extract, bundle, dest, stop))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([work])  # ends at its next chunk (1 MiB)
        if not work.cancelled():
            work.exception()  # its `cancelled` refusal: retrieved, not logged as lost
        raise


def install_error(exc: OSError, version: str, dest: Path) -> CommandError:
    """What went wrong writing a release, as the job's failure. Whatever it is, the
    manager then removes the half release and the bundle (as for any failed job), so the
    node gets its room back at once, not at the next start of edged."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # the outbox or the logs grew since the space was checked: as a full disk
        # mid-download (download.py)
        return CommandError(
            "no_space",
            f"the disk filled up while release {version} was installed in {dest}: free "
            "some space and send update.apply again",
        )
    return CommandError(
        "install_failed",
        f"release {version} could not be installed in {dest} ({exc}): check the disk and "
        "[update] python, then send update.apply again",
    )


async def _install_new(
    tree: ReleaseTree, bundle: "VerifiedBundle", python: Path, config: Path | None
) -> None:
    """Wheels, venv, pip, bytecode, checks, release.json last (into a new directory)."""
    from edged.release.bundle import extract_wheels

    manifest = bundle.manifest
    version = manifest.version
    dest = tree.path(version)
    dest.mkdir(mode=0o755)
    wheels = dest / "wheels"
    files = await _to_the_end(extract_wheels, bundle, wheels)  # ~20 MB hashed, written
    by_name = {p.name: p for p in files}
    pip_entry = manifest.pip_wheel()
    if pip_entry is None:  # refused at verification (check_consistent): never trust an assert
        raise CommandError("bad_bundle", "the bundle has no pip wheel to install with")
    pip_wheel = by_name[pip_entry.name]
    env = clean_env()
    venv = dest / "venv"
    code, out = await run(
        str(python), "-m", "venv", "--without-pip", "--system-site-packages", str(venv),
        env=env, limit_s=CHECK_TIMEOUT_S,
    )  # fmt: skip
    if code != 0:
        raise CommandError("install_failed", f"cannot make a venv with {python}: {out}")
    new_python = venv / "bin" / "python"
    code, out = await run(
        str(new_python), "-m", "pip", "install", "--isolated", "--no-index", "--no-deps",
        "--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location",
        "--quiet", str(pip_wheel), *(str(by_name[n]) for n in manifest.install),
        env=env | {"PYTHONPATH": str(pip_wheel)}, limit_s=PIP_TIMEOUT_S,
    )  # fmt: skip
    if code != 0:
        raise CommandError("install_failed", f"pip could not install the wheels: {out}")
    code, out = await run(*compile_optimized(new_python, venv), env=env, limit_s=PIP_TIMEOUT_S)
    if code != 0:  # as pip's own compiling: what did not compile is compiled when imported
        log.warning("release %s: some modules did not compile for python -OO: %s", version, out)
    await check_release(new_python, version, config)
    await asyncio.to_thread(shutil.rmtree, wheels, ignore_errors=True)
    record = {
        "version": version,
        "installed": now_ms(),
        "signed_by": bundle.kid,
        "target": manifest.target.model_dump(),
        "schemas": {k: v.model_dump() for k, v in manifest.schemas.items()},
        "manifest_sha256": hashlib.sha256(bundle.raw_manifest).hexdigest(),
    }
    write_atomically(dest / COMPLETE, json.dumps(record, indent=1).encode())
