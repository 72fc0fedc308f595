"""Small bundles made by hand, for the tests of what a node accepts."""

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.release.bundle import Keys, write_bundle
from edged.release.manifest import (
    FileEntry,
    Manifest,
    SchemaInfo,
    TargetInfo,
    manifest_bytes,
    sign_manifest,
)
from edged.release.platforms import Target, this_machine
from edged.release.schemas import SCHEMAS

KEY = Ed25519PrivateKey.generate()
WEAK = Ed25519PrivateKey.generate()  # a key whose scopes lack `update`
KEYS: Keys = {
    "release": (KEY.public_key(), frozenset({"update", "read"})),
    "ops": (WEAK.public_key(), frozenset({"config", "read"})),
}


def wheels(directory: Path, version: str = "0.2.0") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in (f"edged-{version}-py3-none-any.whl", "pip-26.3-py3-none-any.whl",
                 "tomli_w-1.2.0-py3-none-any.whl"):  # fmt: skip
        path = directory / name
        path.write_bytes(hashlib.sha256(name.encode()).digest() * 100)
        out.append(path)
    return out


def manifest_for(
    files: list[Path], version: str = "0.2.0", target: Target | None = None, **over: object
) -> Manifest:
    t = target or this_machine()
    fields: dict[str, object] = {
        "format": 1,
        "name": "edged",
        "version": version,
        "created": "2026-12-04T00:00:00Z",
        "target": TargetInfo(
            name=t.name, machine=t.machine, python=t.python_text, abi=t.abi, glibc="2.17"
        ),
        "files": [
            FileEntry(
                path=f"wheels/{f.name}",
                sha256=hashlib.sha256(f.read_bytes()).hexdigest(),
                size=f.stat().st_size,
            )
            for f in files
        ],
        "install": [f.name for f in files if not f.name.startswith("pip-")],
        "schemas": {k: SchemaInfo(**v.as_json()) for k, v in SCHEMAS.items()},
        "unpacked_bytes": 1000,
    }
    return Manifest(**(fields | over))  # type: ignore[arg-type]


def make_bundle(
    out: Path,
    *,
    version: str = "0.2.0",
    key: Ed25519PrivateKey = KEY,
    kid: str = "release",
    manifest: Manifest | None = None,
    members: list[Path] | None = None,
) -> Path:
    files = wheels(out.parent / f"wheels-{out.stem}", version)
    m = manifest or manifest_for(files, version)
    raw = manifest_bytes(m)
    write_bundle(out, raw, sign_manifest(raw, key, kid), files if members is None else members)
    return out


def key_file(directory: Path, key: Ed25519PrivateKey = KEY) -> Path:
    """`key` as the PEM file `edgectl update --key` reads (mode 600, as it wants)."""
    path = directory / "release.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
