"""A node in a temporary root under the unit's launcher, a real bundle, a file server.

The bundle is built once per test session, by `edgectl release build` from a copy of this
checkout whose version is 0.1.1 (the node starts on 0.1.0, a copy of the same code): real
wheels from the index, signed by an update key, installed by the node for real.
"""

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.release.build import BuildResult, build
from edged.release.platforms import this_machine
from edged.security.signing import public_key_text, sign
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import births, reply_to
from tests.helpers.fileserver import FileServer, fleet_ca
from tests.helpers.mqtt import Collector, Received, publish
from tests.helpers.nodes import ROOT, write_config
from tests.helpers.releases import PACKAGES, NodeRoot, fake_release, first_release, make_root
from tests.helpers.service import Service

FLEET, NODE = "test", "shuttle-07"
BASE = f"rnst/v1/{FLEET}/{NODE}"
NEW = "0.1.1"


def _update_key() -> Ed25519PrivateKey:
    """A new key for each run; the same one in every worker of a run (xdist's run id is
    new at each run), since they share one bundle signed with it (`bundle`)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return Ed25519PrivateKey.generate()
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"update {run}".encode()).digest())


UPDATE_KEY = _update_key()
CONFIG_KEY = Ed25519PrivateKey.generate()  # a key without the update scope


@pytest.fixture(scope="session")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet CA and a server certificate for localhost (the broker's, and here the
    file server's: dispatch serves bundles with a certificate of the fleet CA)."""
    return fleet_ca(tmp_path_factory.mktemp("fleet-pki"))


def bumped_source(dest: Path, version: str) -> Path:
    """This checkout's package, as release `version`."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    init = dest / "edged/__init__.py"  # the one place the version is written
    text = init.read_text()
    assert '__version__ = "0.1.0"' in text
    init.write_text(text.replace('__version__ = "0.1.0"', f'__version__ = "{version}"', 1))
    return dest


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """Release 0.1.1 for this machine, built and signed once per run: the first worker
    that needs it builds it (a build is ~10 s of pip on 2 busy cores, and the files of
    this folder go to different workers), the others wait for it and read it. The tests
    only read the bundle (`variant` writes its own copy)."""
    if os.environ.get("PYTEST_XDIST_TESTRUNUID") is None:
        return _build(tmp_path_factory.mktemp("bundle"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    with (shared / "bundle.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = shared / "bundle.pickle"
        if done.exists():
            result: BuildResult = pickle.loads(done.read_bytes())
            return result
        result = _build(shared / "bundle")
        done.write_bytes(pickle.dumps(result))
        return result


def _build(work: Path) -> BuildResult:
    work.mkdir(exist_ok=True)
    (work / "src").mkdir()
    source = bumped_source(work / "src", NEW)
    started = time.monotonic()
    result = build(
        this_machine(), work / f"edged-{NEW}.bundle", UPDATE_KEY, "release", source=source,
        native=True,
    )  # fmt: skip
    print(f"bundle built in {time.monotonic() - started:.1f} s: {result.size} bytes")
    return result


@pytest.fixture
def files(fleet_pki: Path) -> Iterator[FileServer]:
    server = FileServer(fleet_pki / "broker.crt", fleet_pki / "broker.key").start()
    yield server
    server.stop()


@pytest.fixture
def node_root(tmp_path: Path) -> NodeRoot:
    root = make_root(tmp_path / "root")
    first_release(root, "0.1.0")
    return root


def write_node_config(
    root: NodeRoot,
    port: int,
    pki: Path,
    *,
    update: dict[str, Any] | None = None,
    extra: str = "",
    release_scopes: tuple[str, ...] | None = ("read", "operate", "config", "update"),
) -> Path:
    """The node's /etc/edged/edged.toml: the tests' node config (a simulated GPS) whose every
    fix is a QoS 1 position (the burst a switch must not lose), an update key (with
    `release_scopes`; None: revoked, not in the config) and a key without the update scope,
    [update] for the tests."""
    settings = {
        "switch": "now", "trial_s": 40, "stable_s": 1, "ca_file": str(pki / "ca.crt"),
        "min_free_mb": 50,
    } | (update or {})  # fmt: skip
    update_toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    every_fix = "min_period_s = 0\nmin_distance_m = 0\nmax_period_s = 0.2"
    release_key = "" if release_scopes is None else (
        f'[[security.keys]]\nid = "release"\n'
        f'public_key = "{public_key_text(UPDATE_KEY.public_key())}"\n'
        f"scopes = {json.dumps(list(release_scopes))}"
    )  # fmt: skip
    lines = f"""
[clock]
trust_system_clock = true

[services.position.moving]
{every_fix}
[services.position.stopped]
{every_fix}

[update]
{update_toml}

[security]
{release_key}
[[security.keys]]
id = "ops"
public_key = "{public_key_text(CONFIG_KEY.public_key())}"
scopes = ["read", "operate", "config"]

{extra}
"""
    path = write_config(root.data, port, node=NODE, fleet=FLEET, speed_factor=5.0, extra=lines)
    return path.replace(root.config)


@pytest.fixture
async def service(node_root: NodeRoot, tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(node_root.path, tmp_path / "service.log")
    yield svc
    await svc.stop()


async def send_command(
    port: int, name: str, args: dict[str, Any], *, key: Ed25519PrivateKey = UPDATE_KEY,
    kid: str | None = None,
) -> str:  # fmt: skip
    """Publish a signed command to the node; returns its id."""
    cmd_id = f"t{time.monotonic_ns()}"
    ts = int(time.time() * 1000)
    doc: dict[str, Any] = {"id": cmd_id, "ts": ts, "args": args}
    doc["sig"] = sign(key, f"{BASE}/cmd/{name}", cmd_id, ts, args)
    if kid:
        doc["kid"] = kid
    await publish(port, f"{BASE}/cmd/{name}", json.dumps(doc).encode())
    return cmd_id


def apply_args(result: BuildResult, url: str, **over: Any) -> dict[str, Any]:
    return {
        "version": result.manifest.version,
        "url": url,
        "size": result.size,
        "sha256": result.sha256,
    } | over


def reply(c: Collector, name: str, cmd_id: str) -> dict[str, Any] | None:
    """The reply to the command `cmd_id` (on `reply/` + the name, with `/` for `.`)."""
    del name  # the id says which command it answers, whatever the topic's spelling
    return reply_to(c, cmd_id)


def updates(c: Collector) -> list[dict[str, Any]]:
    return [m.payload for m in c.on("update")]


def states(c: Collector) -> list[str]:
    """The `update` states in the order they came, repeats folded."""
    out: list[str] = []
    for u in updates(c):
        if not out or out[-1] != u["state"]:
            out.append(u["state"])
    return out


def last_update(c: Collector) -> dict[str, Any] | None:
    found = updates(c)
    return found[-1] if found else None


async def wait_state(c: Collector, state: str, timeout: float) -> dict[str, Any]:
    await c.wait_for(
        lambda: any(u["state"] == state for u in updates(c)), timeout, f"update state {state}"
    )
    return next(u for u in reversed(updates(c)) if u["state"] == state)


async def wait_any_state(c: Collector, wanted: tuple[str, ...], timeout: float) -> str:
    """The first of `wanted` to come. `update` is latest-only in the outbox: a state the
    node left quickly may be replaced by the next before it was sent, as designed."""
    await c.wait_for(
        lambda: any(u["state"] in wanted for u in updates(c)), timeout, f"update state {wanted}"
    )
    return next(u["state"] for u in updates(c) if u["state"] in wanted)


async def start_node(service: Service, broker: Mosquitto, timeout: float = 20) -> Collector:
    """The collector (subscribed first), then the service; returns once the birth came."""
    c = Collector(broker.port, topic=f"{BASE}/#", client_id=f"dispatch-{time.monotonic_ns()}")
    await c.__aenter__()
    service.start()
    await c.wait_for(lambda: bool(births(c)), timeout, "the node's birth")
    return c


__all__ = ["Received", "births"]


def variant(
    bundle: BuildResult,
    out: Path,
    *,
    key: Ed25519PrivateKey = UPDATE_KEY,
    kid: str = "release",
    machine: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The session's bundle signed by another key, or claiming another machine; returns
    the file and the update.apply arguments for it (without the url)."""
    import hashlib
    import tarfile

    from edged.release.bundle import read_head, write_bundle
    from edged.release.manifest import manifest_bytes, parse_manifest, sign_manifest

    raw, _ = read_head(bundle.bundle)
    if machine is not None:
        manifest = parse_manifest(raw)
        target = manifest.target.model_copy(update={"machine": machine, "name": machine})
        raw = manifest_bytes(manifest.model_copy(update={"target": target}))
    wheels = out.parent / f"{out.stem}-wheels"
    wheels.mkdir()
    paths = []
    with tarfile.open(bundle.bundle) as tar:
        for member in tar.getmembers():
            if member.name.startswith("wheels/"):
                f = tar.extractfile(member)
                assert f is not None
                path = wheels / member.name.split("/", 1)[1]
                path.write_bytes(f.read())
                paths.append(path)
    write_bundle(out, raw, sign_manifest(raw, key, kid), paths)
    data = out.read_bytes()
    args = {
        "version": bundle.manifest.version,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return out, args


def stage(root: NodeRoot, version: str, patches: dict[str, Any] | None = None) -> str:
    """A release installed and staged as `update.apply` would leave it (made from this
    checkout, with `patches` to make it misbehave): the node switches to it when it starts,
    if its keys still trust the update key that signed its manifest. Returns the update's
    id."""
    import dataclasses
    import hashlib
    import uuid

    from edged.release.manifest import manifest_bytes, sign_manifest
    from edged.update.job import Job, WorkDir
    from tests.release.support import manifest_for, wheels

    dest = fake_release(root.tree, version, patches)
    raw = manifest_bytes(manifest_for(wheels(root.path / f"wheels-{version}", version), version))
    info = json.loads((dest / "release.json").read_text())
    info["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (dest / "release.json").write_text(json.dumps(info))
    job = Job(
        id=uuid.uuid4().hex, version=version, url="https://127.0.0.1/unused", size=1,
        sha256="0" * 64, switch="now", state="staged", kid="release",
    )  # fmt: skip
    job.signed(raw, sign_manifest(raw, UPDATE_KEY, "release"))
    WorkDir(root.releases).save(job)
    assert dataclasses.asdict(job)["state"] == "staged"
    return job.id
