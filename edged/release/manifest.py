"""The manifest of a release bundle: what is inside, for which machine, what data it reads.

It is signed as bytes, exactly as stored in the bundle: `manifest.sig` holds the id of the
signing key and an Ed25519 signature over `edged-release/v1\\n` followed by manifest.json.
The domain prefix keeps a bundle signature from ever passing for a command's or an access
list's. A node accepts it only from a key of its `[[security.keys]]` that holds the `update`
scope; the manifest then vouches for every other file of the bundle by its SHA-256.
"""

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from edged.errors import CommandError
from edged.release.launcher import valid_version
from edged.release.platforms import Target, glibc_needed, wheel_fits
from edged.security.signing import PublicKey, verify

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

FORMAT = 1
SIGNING_DOMAIN = b"edged-release/v1\n"
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIG_BYTES = 4096
MAX_FILES = 400
UPDATE_SCOPE = "update"

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
WheelPath = Annotated[str, Field(pattern=r"^wheels/[A-Za-z0-9_.+!-]{1,200}\.whl$")]


def _release_name(value: str) -> str:
    """As the launcher takes it: a whole name (a pydantic `pattern` only searches), never a
    path nor `current`/`previous`; the manifest's version names the release's directory."""
    if not valid_version(value):
        raise ValueError(f"not a release name (such as 0.2.0): {value[:80]!r}")
    return value


Version = Annotated[str, Field(max_length=64), AfterValidator(_release_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    path: WheelPath
    sha256: Sha256
    size: int = Field(ge=0, le=1 << 31)

    @property
    def name(self) -> str:
        return self.path.split("/", 1)[1]


class TargetInfo(_Model):
    """The machine the wheels are for."""

    name: str = Field(max_length=32)
    machine: str = Field(pattern=r"^[a-z0-9_]{1,16}$")
    python: str = Field(pattern=r"^3\.\d{1,2}$")
    abi: str = Field(pattern=r"^cp3\d{1,2}$")
    glibc: str = Field(pattern=r"^\d{1,2}\.\d{1,3}$", description="oldest glibc the wheels need")

    def target(self) -> Target:
        py = tuple(int(x) for x in self.python.split("."))
        libc = tuple(int(x) for x in self.glibc.split("."))
        return Target(self.name, self.machine, (py[0], py[1]), (libc[0], libc[1]))


class SchemaInfo(_Model):
    version: int = Field(ge=0)
    compat: int = Field(ge=0)
    reads_from: int = Field(ge=0)


class Manifest(_Model):
    format: Literal[1]
    name: Literal["edged"]
    version: Version
    created: str = Field(max_length=40)
    target: TargetInfo
    files: list[FileEntry] = Field(min_length=1, max_length=MAX_FILES)
    install: list[str] = Field(
        description="wheel names pip installs (every wheel but pip's own, which installs them)",
        max_length=MAX_FILES,
    )
    system: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="packages the node's Python must provide itself (Debian's), not bundled",
    )
    schemas: dict[str, SchemaInfo]
    unpacked_bytes: int = Field(ge=0, description="the wheels' content, uncompressed")
    notes: list[str] = Field(default_factory=list, max_length=64)

    def check_consistent(self) -> None:
        """Files named once; what to install is in the files; pip is there to install it."""
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("a file is listed twice")
        if not set(self.install) <= set(names):
            raise ValueError("`install` names a wheel that is not in `files`")
        if self.pip_wheel() is None:
            raise ValueError("no pip wheel: a node installs with the bundle's own pip")
        if not any(n.startswith("edged-") for n in self.install):
            raise ValueError("no edged wheel to install")

    def pip_wheel(self) -> FileEntry | None:
        return next((f for f in self.files if f.name.startswith("pip-")), None)

    def misfits(self, target: Target) -> list[str]:
        """Wheels that would not run on `target` (empty: the bundle is for this machine)."""
        return [f.name for f in self.files if not wheel_fits(f.name, target)]


def glibc_of(wheels: list[str], machine: str) -> str:
    needed = [v for v in (glibc_needed(w, machine) for w in wheels) if v is not None]
    major, minor = max(needed) if needed else (2, 17)
    return f"{major}.{minor}"


def manifest_bytes(manifest: Manifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True).encode() + b"\n"


def sign_manifest(raw: bytes, key: "Ed25519PrivateKey", kid: str) -> bytes:
    sig = base64.b64encode(key.sign(SIGNING_DOMAIN + raw)).decode()
    return json.dumps({"kid": kid, "sig": sig}).encode() + b"\n"


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest, or CommandError `bad_bundle` saying what is wrong with it."""
    try:
        manifest = Manifest.model_validate_json(raw)
        manifest.check_consistent()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise CommandError("bad_bundle", f"manifest.json: {problems}") from None
    except ValueError as exc:
        raise CommandError("bad_bundle", f"manifest.json: {exc}") from None
    return manifest


def check_signature(
    raw: bytes,
    sig_doc: bytes,
    keys: Mapping[str, tuple["PublicKey | Ed25519PublicKey", frozenset[str]]],
) -> str:
    """The id of the key that signed `raw` with the `update` scope; else CommandError:
    `bad_signature` (no known key verifies it) or `forbidden` (the key lacks the scope)."""
    try:
        doc = json.loads(sig_doc)
        kid, sig = doc["kid"], doc["sig"]
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise TypeError
        base64.b64decode(sig, validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise CommandError(
            "bad_signature", 'manifest.sig is not {"kid": …, "sig": base64}'
        ) from None
    message = SIGNING_DOMAIN + raw
    candidates = [kid] if kid in keys else list(keys)
    verified = [k for k in candidates if verify(keys[k][0], sig, message)]
    if not verified:
        raise CommandError(
            "bad_signature",
            f"the bundle's signature (key {kid[:64]!r}) does not verify with any key of this "
            "node's [[security.keys]]",
        )
    good = [k for k in verified if UPDATE_SCOPE in keys[k][1]]
    if not good:
        raise CommandError(
            "forbidden",
            f"the bundle is signed by key {verified[0]!r}, which lacks the scope "
            f"{UPDATE_SCOPE!r}: only an update key may sign releases",
        )
    return good[0]
