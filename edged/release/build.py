"""`edgectl release build`: edged and every dependency as wheels for one target, signed.

How it finds the wheels, with pip (which ops already have) and nothing else:

1. edged's own wheel, from the source tree (or one given);
2. the dependency closure, resolved here with this Python (3.11, as on bookworm): names and
   exact versions. Environment markers are judged for this machine, as pip does;
3. for each, a wheel for the target's platform and CPython from the index (pip download
   --platform): what has none is a gap;
4. a gap whose source distribution builds here into a pure-Python wheel (`py3-none-any`,
   e.g. pynfc) is filled with that wheel, and the manifest says so;
5. what is still missing stops the build with what to do: a wheel built ahead (`--wheels
   DIR`, e.g. cryptography for armv7l built on a 32-bit Pi, or piwheels.org's), which pip
   then finds there first.

pip's own wheel goes in too: a node installs with the bundle's pip, whatever its own
Python has. The manifest lists every file with its SHA-256 and is signed with an ops key
whose scope holds `update`.
"""

import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.errors import EdgedError
from edged.release.bundle import write_bundle
from edged.release.launcher import sha256_file as sha256_of
from edged.release.manifest import (
    FileEntry,
    Manifest,
    SchemaInfo,
    TargetInfo,
    glibc_of,
    manifest_bytes,
    sign_manifest,
)
from edged.release.platforms import WHEEL_NAME, Target, wheel_fits
from edged.release.schemas import SCHEMAS

Say = Callable[[str], None]
NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)")


class BuildError(EdgedError):
    """The bundle cannot be built; the message lists what is missing and what to do."""


@dataclass(frozen=True)
class Requirement:
    name: str
    version: str

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Availability:
    """What the index has for the target, requirement by requirement."""

    found: list[Requirement] = field(default_factory=list)
    built_here: list[Requirement] = field(default_factory=list)
    missing: list[Requirement] = field(default_factory=list)

    def report(self, target: Target) -> list[str]:
        lines = [
            f"{r.pin}: no wheel for the target; its sdist builds here as pure Python"
            for r in self.built_here
        ]
        lines += [gap_advice(r, target) for r in self.missing]
        return lines


def gap_advice(req: Requirement, target: Target) -> str:
    """What to do about a requirement with no wheel for the target (docs/updates.md)."""
    return (
        f"{req.pin}: no wheel for {target.machine} / CPython {target.python_text} on the "
        f"index, and no pure-Python sdist. Build one ahead and pass its directory with "
        f"--wheels DIR: on a machine of the target ({target.machine} Raspberry Pi OS "
        f"bookworm, or tools/arch_check.sh's root), `pip wheel '{req.pin}' --no-deps -w DIR` "
        f"(C or Rust code needs its compiler and headers there), or take a build from "
        f"piwheels.org: `pip download "
        f"--index-url https://www.piwheels.org/simple --only-binary=:all: --no-deps "
        f"--platform linux_{target.machine} --python-version {target.python_text} "
        f"'{req.pin}' -d DIR`"
    )


def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def _fail(what: str, proc: subprocess.CompletedProcess[str]) -> BuildError:
    tail = "\n".join(line for line in proc.stderr.splitlines() if "is ignored" not in line)[-2000:]
    return BuildError(f"{what} failed (pip exit {proc.returncode}):\n{tail}")


def edged_wheel(source: Path, work: Path) -> Path:
    out = work / "edged"
    proc = pip("wheel", "--no-deps", "--quiet", "-w", str(out), str(source))
    if proc.returncode != 0:
        raise _fail(f"building edged's wheel from {source}", proc)
    found = sorted(out.glob("edged-*.whl"))
    if len(found) != 1:
        raise BuildError(f"pip wheel {source} made {len(found)} edged wheels")
    return found[0]


def resolve(
    wheel: Path, extras: Sequence[str], find_links: Sequence[Path], work: Path
) -> list[Requirement]:
    """Every package edged needs (names and versions), resolved with this Python."""
    spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    report = work / "resolved.json"
    links = [a for d in find_links for a in ("--find-links", str(d))]
    proc = pip(
        "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
        *links, spec,
    )  # fmt: skip
    if proc.returncode != 0:
        raise _fail("resolving edged's dependencies", proc)
    data = json.loads(report.read_text())
    reqs = [
        Requirement(i["metadata"]["name"], i["metadata"]["version"])
        for i in data["install"]
        if i["metadata"]["name"].lower() != "edged"
    ]
    return sorted(reqs, key=lambda r: r.name.lower())


def _target_options(target: Target, native: bool) -> list[str]:
    if native:
        return ["--only-binary=:all:"]
    opts = ["--only-binary=:all:", "--python-version", target.python_text, "--implementation", "cp"]
    for abi in (target.abi, "abi3", "none"):
        opts += ["--abi", abi]
    for tag in target.platform_tags():
        opts += ["--platform", tag]
    return opts


def availability(
    reqs: Sequence[Requirement],
    target: Target,
    *,
    native: bool,
    find_links: Sequence[Path],
    work: Path,
    dest: Path | None,
) -> Availability:
    """Which requirements have a wheel for the target: `pip download` into `dest`, or a
    metadata-only dry run when `dest` is None. pip stops at the first package it cannot
    find and names it: that one is set aside and the rest asked again."""
    result = Availability()
    left = list(reqs)
    links = [a for d in find_links for a in ("--find-links", str(d))]
    while left:
        common = ["--no-deps", "--quiet", *links, *_target_options(target, native)]
        if dest is None:
            tgt = str(work / "dry-target")
            args = ["install", "--dry-run", "--ignore-installed", "--target", tgt, *common]
        else:
            args = ["download", "-d", str(dest), *common]
        proc = pip(*args, *(r.pin for r in left))
        if proc.returncode == 0:
            result.found.extend(left)
            break
        m = NOT_FOUND.search(proc.stderr)
        names = {r.pin.lower(): r for r in left} | {r.name.lower(): r for r in left}
        gone = names.get(m[1].lower()) if m else None
        if gone is None:
            raise _fail("downloading wheels for the target", proc)
        result.missing.append(gone)
        left.remove(gone)
    return result


def build_pure(req: Requirement, target: Target, dest: Path, work: Path) -> Path | None:
    """A wheel built here from the requirement's sdist, when it is pure Python."""
    out = work / f"built-{req.name}"
    proc = pip("wheel", "--no-deps", "--quiet", "--no-binary", req.name, "-w", str(out), req.pin)
    if proc.returncode != 0:
        return None
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1 or not wheels[0].name.endswith("-none-any.whl"):
        return None
    if not wheel_fits(wheels[0].name, target):
        return None
    final = dest / wheels[0].name
    wheels[0].replace(final)
    return final


@dataclass
class BuildResult:
    bundle: Path
    manifest: Manifest
    availability: Availability
    sha256: str
    size: int


def unpacked(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as z:
        return sum(i.file_size for i in z.infolist())


def check_target(
    target: Target,
    *,
    source: Path | None = None,
    wheel: Path | None = None,
    extras: Sequence[str] = ("nfc",),
    find_links: Sequence[Path] = (),
    native: bool = False,
) -> tuple[list[Requirement], Availability]:
    """Resolve and ask the index, downloading nothing: what a build would lack."""
    with tempfile.TemporaryDirectory(prefix="edged-release-") as tmp:
        work = Path(tmp)
        whl = wheel or edged_wheel(_source(source), work)
        reqs = resolve(whl, extras, find_links, work)
        found = availability(
            reqs, target, native=native, find_links=find_links, work=work, dest=None
        )
        still: list[Requirement] = []
        for req in found.missing:
            if build_pure(req, target, work, work) is not None:
                found.built_here.append(req)
            else:
                still.append(req)
        found.missing = still
        return reqs, found


def build(
    target: Target,
    out: Path,
    key: Ed25519PrivateKey,
    kid: str,
    *,
    source: Path | None = None,
    wheel: Path | None = None,
    extras: Sequence[str] = ("nfc",),
    find_links: Sequence[Path] = (),
    native: bool = False,
    say: Say = lambda _: None,
) -> BuildResult:
    """Build and sign the bundle `out` (see the module docstring)."""
    if (sys.version_info.major, sys.version_info.minor) != target.python:
        raise BuildError(
            f"this Python is {sys.version_info.major}.{sys.version_info.minor}; dependencies "
            f"for CPython {target.python_text} must be resolved with it (run edgectl from a "
            f"{target.python_text} venv)"
        )
    with tempfile.TemporaryDirectory(prefix="edged-release-") as tmp:
        work = Path(tmp)
        wheels_dir = work / "wheels"
        wheels_dir.mkdir()
        whl = wheel or edged_wheel(_source(source), work)
        if not wheel_fits(whl.name, target):
            raise BuildError(f"{whl.name} is not a wheel for {target.describe()}")
        version = WHEEL_NAME.fullmatch(whl.name)["version"]  # type: ignore[index]
        say(f"edged {version} for {target.describe()}")
        reqs = resolve(whl, extras, find_links, work)
        say(f"{len(reqs)} dependencies resolved; fetching their wheels")
        found = availability(
            reqs, target, native=native, find_links=find_links, work=work, dest=wheels_dir
        )
        still: list[Requirement] = []
        for req in found.missing:
            built = build_pure(req, target, wheels_dir, work)
            if built is not None:
                found.built_here.append(req)
                say(f"{req.pin}: built here from its sdist (pure Python)")
            else:
                still.append(req)
        found.missing = still
        if still:
            raise BuildError(
                "some dependencies have no wheel for the target:\n  - "
                + "\n  - ".join(gap_advice(r, target) for r in still)
            )
        proc = pip("download", "--no-deps", "--quiet", "--only-binary=:all:", "-d",
                   str(work / "pip"), "pip")  # fmt: skip
        if proc.returncode != 0:
            raise _fail("downloading pip's wheel", proc)
        pip_wheel = next((work / "pip").glob("pip-*.whl"))
        (wheels_dir / whl.name).write_bytes(whl.read_bytes())
        (wheels_dir / pip_wheel.name).write_bytes(pip_wheel.read_bytes())
        wheels = sorted(wheels_dir.glob("*.whl"))
        misfits = [w.name for w in wheels if not wheel_fits(w.name, target)]
        if misfits:
            raise BuildError(f"wheels that would not run on {target.describe()}: {misfits}")
        manifest = Manifest(
            format=1,
            name="edged",
            version=version,
            created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            target=TargetInfo(
                name=target.name,
                machine=target.machine,
                python=target.python_text,
                abi=target.abi,
                glibc=glibc_of([w.name for w in wheels], target.machine),
            ),
            files=[
                FileEntry(path=f"wheels/{w.name}", sha256=sha256_of(w), size=w.stat().st_size)
                for w in wheels
            ],
            install=[w.name for w in wheels if w.name != pip_wheel.name],
            schemas={name: SchemaInfo(**s.as_json()) for name, s in SCHEMAS.items()},
            unpacked_bytes=sum(unpacked(w) for w in wheels),
            notes=[f"{r.pin}: built from its sdist (pure Python)" for r in found.built_here],
        )
        manifest.check_consistent()
        raw = manifest_bytes(manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bundle(out, raw, sign_manifest(raw, key, kid), wheels)
    size = out.stat().st_size
    say(f"{out}: {len(wheels)} wheels, {size / 1e6:.1f} MB, signed by {kid}")
    return BuildResult(out, manifest, found, sha256_of(out), size)


def _source(source: Path | None) -> Path:
    """The source tree: given, or the checkout this edged runs from."""
    if source is None:
        here = Path(__file__).resolve().parents[2]
        if not (here / "pyproject.toml").is_file():
            raise BuildError(
                "edged is not running from a source checkout: give --source DIR or --wheel FILE"
            )
        source = here
    if not (source / "pyproject.toml").is_file():
        raise BuildError(f"{source} is not an edged source tree (no pyproject.toml)")
    return source
