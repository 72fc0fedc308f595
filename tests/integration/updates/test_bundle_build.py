"""`edgectl release build`: every dependency as a wheel for the target, pip's own wheel, a
signed manifest; and for a Raspberry Pi target, what the index lacks and the wheel built
ahead that fills the gap. The last test asks PyPI (metadata only, nothing downloaded)."""

import json
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

from edged.release.build import (
    BuildResult,
    Requirement,
    availability,
    build_pure,
    resolve,
)
from edged.release.bundle import read_head, verify_bundle
from edged.release.manifest import parse_manifest
from edged.release.platforms import TARGETS, WHEEL_NAME, this_machine, wheel_fits
from edged.release.schemas import SCHEMAS
from edged.security.signing import public_key_from_text, public_key_text
from tests.helpers.nodes import ROOT
from tests.integration.updates.conftest import NEW, UPDATE_KEY


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def test_the_bundle_holds_every_dependency_as_a_wheel_for_this_machine(bundle: BuildResult) -> None:
    raw, _ = read_head(bundle.bundle)
    manifest = parse_manifest(raw)
    names = {canonical(WHEEL_NAME.fullmatch(f.name)["name"]) for f in manifest.files}  # type: ignore[index]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["nfc"]]
    for requirement in wanted:
        assert canonical(re.split(r"[<>=!~\[ ]", requirement)[0]) in names, requirement
    assert {"edged", "pip"} <= names and manifest.version == NEW
    assert all(wheel_fits(f.name, this_machine()) for f in manifest.files)
    assert not any(n.startswith("pip-") for n in manifest.install)
    assert any("pynfc" in note and "sdist" in note for note in manifest.notes)
    assert {k: v.model_dump() for k, v in manifest.schemas.items()} == {
        k: v.as_json() for k, v in SCHEMAS.items()
    }
    keys = {
        "release": (
            public_key_from_text(public_key_text(UPDATE_KEY.public_key())),
            frozenset({"update"}),
        )
    }
    assert verify_bundle(bundle.bundle, keys, version=NEW, target=this_machine()).kid == "release"


def test_release_show_gives_the_update_apply_arguments(bundle: BuildResult) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edged.cli.ctl", "release", "show", str(bundle.bundle), "--url", "https://f/b"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    args = json.loads(out.stdout)["update.apply"]
    assert args == {
        "version": NEW,
        "url": "https://f/b",
        "size": bundle.size,
        "sha256": bundle.sha256,
    }


def stub_wheel(directory: Path, req: Requirement, machine: str) -> Path:
    """What someone builds ahead on a Pi (`pip wheel`): here only its name and metadata."""
    name = canonical(req.name)
    path = directory / f"{name}-{req.version}-cp311-cp311-linux_{machine}.whl"
    info = f"{name}-{req.version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {req.name}\nVersion: {req.version}\n"
        )
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_armv7l\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return path


def test_the_builder_says_what_armv7l_lacks_and_takes_a_wheel_built_ahead(
    bundle: BuildResult, tmp_path: Path
) -> None:
    target = TARGETS["armv7l"]
    with tarfile.open(bundle.bundle) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("wheels/edged-"))
        (tmp_path / "wheels").mkdir()
        (tmp_path / member.name).write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    wheel = tmp_path / member.name
    reqs = resolve(wheel, ["nfc"], [], tmp_path)
    found = availability(reqs, target, native=False, find_links=[], work=tmp_path, dest=None)
    missing = {r.name.lower(): r for r in found.missing}
    assert "pynfc" in missing, "pynfc has no wheel: only its sdist"
    pure = build_pure(missing.pop("pynfc"), target, tmp_path, tmp_path)
    assert pure is not None and pure.name.endswith("-py3-none-any.whl")
    print(f"armv7l: no wheel on the index for {sorted(r.pin for r in missing.values())}")
    ahead = tmp_path / "built-ahead"
    ahead.mkdir()
    for req in missing.values():
        stub_wheel(ahead, req, target.machine)
    again = availability(
        list(missing.values()), target, native=False, find_links=[ahead], work=tmp_path, dest=None
    )
    assert again.missing == [] and len(again.found) == len(missing)
