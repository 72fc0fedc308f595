"""Bad bundles are refused before anything changes: the running release, its config, its
tree and its process stay as they were; only the `update` topic says why."""

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.release.build import BuildResult
from tests.helpers.broker import Mosquitto
from tests.helpers.fileserver import FileServer
from tests.helpers.mqtt import Collector
from tests.helpers.releases import NodeRoot, first_release, make_root
from tests.helpers.service import Service
from tests.integration.updates.conftest import (
    CONFIG_KEY,
    apply_args,
    births,
    reply,
    send_command,
    stage,
    start_node,
    variant,
    wait_state,
    write_node_config,
)


def snapshot(root: NodeRoot) -> dict[str, Any]:
    """What must not change: the tree, the config, what the release directory holds."""
    releases = sorted(p.name for p in root.releases.iterdir() if not p.name.startswith("."))
    return {
        "tree": {k: v for k, v in root.status().items() if k != "outcome"},
        "config": root.config.read_bytes(),
        "entries": releases,
        "src": sorted(
            str(p.relative_to(root.releases)) for p in (root.releases / "0.1.0").rglob("*")
        ),
    }


async def refused_with(
    c: Collector, service: Service, root: NodeRoot, before: dict[str, Any], code: str
) -> dict[str, Any]:
    failed = await wait_state(c, "failed", 60)
    assert failed["code"] == code, failed
    assert snapshot(root) == before
    assert len(service.runs) == 1 and service.pid == service.runs[0].pid, "the node restarted"
    leftovers = [p.name for p in (root.releases / ".update").iterdir() if p.name != "job.json"]
    assert leftovers == [], "the download is not kept"
    assert len(births(c)) == 1
    return failed


CASES = ["unknown key", "key without update scope", "other machine"]


@pytest.mark.parametrize("case", CASES)
async def test_a_bundle_whose_manifest_a_node_must_not_trust_is_refused(
    case: str,
    broker: Mosquitto,
    fleet_pki: Path,
    bundle: BuildResult,
    files: FileServer,
    node_root: NodeRoot,
    service: Service,
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    options: dict[str, Any] = {
        "unknown key": {"key": Ed25519PrivateKey.generate(), "kid": "release"},
        "key without update scope": {"key": CONFIG_KEY, "kid": "ops"},
        "other machine": {
            "machine": "aarch64" if bundle.manifest.target.machine != "aarch64" else "armv7l"
        },
    }[case]
    code = {"unknown key": "bad_signature", "key without update scope": "forbidden",
            "other machine": "wrong_platform"}[case]  # fmt: skip
    path, args = variant(bundle, tmp_path / "v.bundle", **options)
    write_node_config(node_root, broker.port, fleet_pki)
    url = files.serve("v.bundle", path)
    c = await start_node(service, broker)
    before = snapshot(node_root)
    await send_command(broker.port, "update.apply", args | {"url": url})
    failed = await refused_with(c, service, node_root, before, code)
    print(f"{case}: {failed['reason']}")
    await c.__aexit__()


@pytest.mark.parametrize("case", ["hash mismatch", "size mismatch", "truncated download"])
async def test_a_download_that_is_not_the_signed_bundle_is_refused(
    case: str,
    broker: Mosquitto,
    fleet_pki: Path,
    bundle: BuildResult,
    files: FileServer,
    node_root: NodeRoot,
    service: Service,
) -> None:
    write_node_config(node_root, broker.port, fleet_pki)
    faults = {"truncated download": {"truncate_to": bundle.size - 4096}}.get(case, {})
    url = files.serve("b.bundle", bundle.bundle, **faults)
    args = apply_args(bundle, url)
    if case == "hash mismatch":
        args["sha256"] = "0" * 64
    if case == "size mismatch":
        args["size"] = bundle.size + 1
    code = {"hash mismatch": "hash_mismatch"}.get(case, "size_mismatch")
    c = await start_node(service, broker)
    before = snapshot(node_root)
    await send_command(broker.port, "update.apply", args)
    failed = await refused_with(c, service, node_root, before, code)
    print(f"{case}: {failed['reason']}")
    await c.__aexit__()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[NodeRoot]:
    """The release tree on a 60 MB filesystem of its own, as on a nearly full SD card."""
    root = make_root(tmp_path / "small")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(root.releases)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        first_release(root, "0.1.0")
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root.releases)], check=False)


async def test_an_update_that_would_fill_the_disk_is_refused(
    broker: Mosquitto,
    fleet_pki: Path,
    bundle: BuildResult,
    files: FileServer,
    small_disk: NodeRoot,
    tmp_path: Path,
) -> None:
    write_node_config(small_disk, broker.port, fleet_pki)
    service = Service(small_disk.path, tmp_path / "small.log")
    try:
        c = await start_node(service, broker)
        before = snapshot(small_disk)
        cmd = await send_command(
            broker.port, "update.apply", apply_args(bundle, files.serve("b", bundle.bundle))
        )
        await c.wait_for(lambda: reply(c, "update.apply", cmd) is not None, 10, "the refusal")
        answer = reply(c, "update.apply", cmd)
        assert answer is not None and answer["error"]["code"] == "no_space", answer
        assert "MB free" in answer["error"]["message"]
        assert snapshot(small_disk) == before and files.requests == []
        await c.__aexit__()
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("scopes", "code"), [(None, "bad_signature"), (("read", "operate"), "forbidden")],
    ids=["key removed", "key without update"],
)  # fmt: skip
async def test_a_release_staged_before_its_key_was_revoked_is_removed_not_switched_to(
    scopes: tuple[str, ...] | None,
    code: str,
    broker: Mosquitto,
    fleet_pki: Path,
    node_root: NodeRoot,
    service: Service,
) -> None:
    """The release was verified and staged; its update key leaked and was taken out of the
    config (or of the scope `update`) while the node was down. Starting on that config,
    the node switched to the release all the same: now it refuses it and removes it."""
    update_id = stage(node_root, "0.2.0")
    write_node_config(node_root, broker.port, fleet_pki, release_scopes=scopes)
    c = await start_node(service, broker)
    failed = await wait_state(c, "failed", 60)
    assert failed["id"] == update_id and failed["code"] == code, failed
    assert "no longer trusted" in failed["reason"] and "send update.apply" in failed["reason"]
    for _ in range(100):  # removed beside the loop
        if not (node_root.releases / "0.2.0").exists():
            break
        await asyncio.sleep(0.1)
    assert not (node_root.releases / "0.2.0").exists(), "the revoked release is still there"
    assert node_root.status()["current"] == "0.1.0" and node_root.status()["trial"] is None
    assert len(service.runs) == 1 and service.pid == service.runs[0].pid, "the node switched"
    assert [b["version"] for b in births(c)] == ["0.1.0"]
    await c.__aexit__()
