"""The bundle file: one uncompressed tar holding manifest.json, manifest.sig and the wheels.

Uncompressed because wheels already are zips; a tar because it streams and its first
members (the manifest and its signature) can be read and checked before anything else.
A node reads a bundle twice and writes nothing the first time: `verify_bundle` checks the
signature, the version, the machine and every member against the manifest (names, sizes,
SHA-256, nothing missing, nothing extra, only regular files); only then `extract_wheels`
writes the wheels, checking each hash again as it goes.

tarfile is imported in the functions that use it: the daemon imports this module at start
(its update service) and needs tarfile (~0.2 MB) only during an update.
"""

import functools
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from edged.errors import CommandError
from edged.release.manifest import (
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    MAX_SIG_BYTES,
    Manifest,
    check_signature,
    parse_manifest,
)
from edged.release.platforms import Target
from edged.security.signing import PublicKey

if TYPE_CHECKING:
    import tarfile
    import threading

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_HEADER_BYTES = 64 * 1024
"""A tar member's own header records (a pax record, a GNU long name): a bundle's are a
wheel's name at most. Nothing signs them, and tarfile reads each whole into memory."""
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
Keys = Mapping[str, tuple["PublicKey | Ed25519PublicKey", frozenset[str]]]
"""Key id -> (key, scopes): a config's keys (`PublicKey`, cryptography loaded at the first
check) or cryptography's own."""


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: Manifest
    raw_manifest: bytes
    kid: str
    raw_signature: bytes = b""
    """manifest.sig as it came: a staged release is checked again against the keys in
    force when it switches (a key may have been revoked meanwhile)."""


def write_bundle(out: Path, manifest_raw: bytes, signature: bytes, wheels: list[Path]) -> None:
    """Write the bundle (members in the order a node reads them); fixed owners and times,
    so the same inputs give the same bytes."""
    import tarfile

    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, manifest_raw)
        _add_bytes(tar, SIGNATURE, signature)
        for wheel in wheels:
            info = _info(f"wheels/{wheel.name}", wheel.stat().st_size)
            with wheel.open("rb") as f:
                tar.addfile(info, f)
    tmp.replace(out)


def _info(name: str, size: int) -> "tarfile.TarInfo":
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = size, 0o644, 0, 0, 0
    info.uname = info.gname = "root"
    return info


def _add_bytes(tar: "tarfile.TarFile", name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def read_head(path: Path) -> tuple[bytes, bytes]:
    """manifest.json and manifest.sig, without checking them (edgectl reads the version)."""
    import tarfile

    try:
        with _open_tar(path) as tar:
            members = _members(tar)
            return _head(tar, members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CommandError("bad_bundle", f"not a bundle (a tar file): {exc}") from None


def verify_bundle(path: Path, keys: Keys, *, version: str | None, target: Target) -> VerifiedBundle:
    """Everything about the bundle checked, nothing written (see the module docstring).

    Refusals, as CommandError codes: bad_bundle, bad_signature, forbidden, wrong_version,
    wrong_platform."""
    import tarfile

    try:
        with _open_tar(path) as tar:
            members = _members(tar)
            raw, sig = _head(tar, members)
            kid = check_signature(raw, sig, keys)
            manifest = parse_manifest(raw)
            if version is not None and manifest.version != version:
                raise CommandError(
                    "wrong_version",
                    f"the bundle is release {manifest.version}, the command said {version}",
                )
            _check_target(manifest, target)
            expected = {f.path: f for f in manifest.files}
            seen: set[str] = set()
            for member in members:
                entry = expected.get(member.name)
                if entry is None or member.name in seen:
                    raise CommandError(
                        "bad_bundle", f"{member.name[:100]!r} is not in the manifest (or twice)"
                    )
                seen.add(member.name)
                if not member.isreg() or member.size != entry.size:
                    raise CommandError(
                        "bad_bundle", f"{entry.path}: not a file of {entry.size} bytes"
                    )
                if _sha256(_open(tar, member)) != entry.sha256:
                    raise CommandError("hash_mismatch", f"{entry.path}: SHA-256 differs")
            missing = sorted(set(expected) - seen)
            if missing:
                raise CommandError("bad_bundle", f"missing from the bundle: {missing[:5]}")
    except (tarfile.TarError, EOFError) as exc:
        raise CommandError("bad_bundle", f"the bundle is not a valid tar file: {exc}") from None
    return VerifiedBundle(path, manifest, raw, kid, sig)


def extract_wheels(
    bundle: VerifiedBundle, dest: Path, stop: "threading.Event | None" = None
) -> list[Path]:
    """Write the wheels into `dest`, hash-checked again; returns their paths. Once `stop`
    is set nothing more is written (CommandError `cancelled`): the install was cancelled,
    and its directory is being removed, or made again by the install after it."""
    dest.mkdir(parents=True, exist_ok=True)
    expected = {f.path: f for f in bundle.manifest.files}
    out: list[Path] = []
    with _open_tar(bundle.path) as tar:
        members = _members(tar)
        _head(tar, members)
        for member in members:
            entry = expected.get(member.name)
            if entry is None:
                raise CommandError("bad_bundle", f"{member.name[:100]!r} is not in the manifest")
            target = dest / entry.name
            digest = hashlib.sha256()
            _stopped(stop)
            with _open(tar, member) as src, target.open("wb") as f:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    _stopped(stop)
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != entry.sha256:
                raise CommandError("hash_mismatch", f"{entry.path} changed since it was verified")
            out.append(target)
    return out


def _stopped(stop: "threading.Event | None") -> None:
    if stop is not None and stop.is_set():
        raise CommandError("cancelled", "the install was cancelled")


def _open_tar(path: Path) -> "tarfile.TarFile":
    """`path` for reading, member by member, each header bounded (`_bounded_info`)."""
    import tarfile

    return tarfile.open(path, "r:", tarinfo=_bounded_info())


@functools.cache
def _bounded_info() -> type["tarfile.TarInfo"]:
    """A TarInfo that refuses, before reading it, a header record over MAX_HEADER_BYTES and
    a GNU sparse member, whose map of pieces goes on in blocks for as long as the file
    does: a bundle has neither, and both are read before the signature is checked (the
    member list comes first), so a bundle the command's SHA-256 pins but no update key
    signed would otherwise take edged's memory (its cgroup's limit: the node killed)."""
    import tarfile

    records = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)  # fmt: skip

    class BoundedInfo(tarfile.TarInfo):
        def _proc_member(self, archive: "tarfile.TarFile") -> "tarfile.TarInfo":
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise CommandError("bad_bundle", "a sparse member: a bundle has none")
            if self.type in records and self.size > MAX_HEADER_BYTES:
                raise CommandError(
                    "bad_bundle",
                    f"a tar header record of {self.size} bytes (a bundle's are under "
                    f"{MAX_HEADER_BYTES})",
                )
            _count_records(archive, self.type in records, self.type, self.size)
            member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
            return member

        # a pax record naming a GNU sparse format (GNU.sparse.*) makes tarfile read the map
        # of the regular member after it: in the record (0.0, 0.1), or in that member's
        # data (1.0), number by number for as long as the file goes on (~25 bytes of
        # memory per byte): refused when the record is seen, before any map is read
        def _proc_gnusparse_00(self, *args: object) -> None:
            raise CommandError("bad_bundle", "a sparse member (pax 0.0): a bundle has none")

        def _proc_gnusparse_01(self, *args: object) -> None:
            raise CommandError("bad_bundle", "a sparse member (pax 0.1): a bundle has none")

        def _proc_gnusparse_10(self, *args: object) -> None:
            raise CommandError("bad_bundle", "a sparse member (pax 1.0): a bundle has none")

    return BoundedInfo


MAX_RECORDS_IN_A_ROW = 2
"""Header records before one member: a pax record, or a GNU long name and long link."""
MAX_RECORD_BYTES = 4 * MAX_HEADER_BYTES
"""Header records of a whole bundle, each counted as one block at least: tarfile keeps a
member's pax record as a dict (~10 bytes of memory per byte) in the member list, and reads
records in a row recursively; a bundle's are a long wheel name's each (under 512 bytes)."""


def _count_records(archive: "tarfile.TarFile", record: bool, kind: bytes, size: int) -> None:
    """Refuse a global pax record (copied into each member's record after it: a bundle
    has none), records in a row past MAX_RECORDS_IN_A_ROW, and records past
    MAX_RECORD_BYTES in all, before tarfile reads the one at hand."""
    import tarfile

    seen = vars(archive).setdefault("_bundle_records", {"row": 0, "bytes": 0})
    if not record:
        seen["row"] = 0
        return
    if kind == tarfile.XGLTYPE:
        raise CommandError("bad_bundle", "a global pax header: a bundle has none")
    seen["row"] += 1
    seen["bytes"] += max(size, tarfile.BLOCKSIZE)
    if seen["row"] > MAX_RECORDS_IN_A_ROW:
        raise CommandError(
            "bad_bundle", f"more than {MAX_RECORDS_IN_A_ROW} tar header records in a row"
        )
    if seen["bytes"] > MAX_RECORD_BYTES:
        raise CommandError(
            "bad_bundle", f"tar header records of more than {MAX_RECORD_BYTES} bytes in all"
        )


def _members(tar: "tarfile.TarFile") -> list["tarfile.TarInfo"]:
    members: list[tarfile.TarInfo] = []
    for member in _iterate(tar):
        members.append(member)
        if len(members) > MAX_FILES + 2:
            raise CommandError("bad_bundle", f"more than {MAX_FILES} files")
    return members


def _iterate(tar: "tarfile.TarFile") -> Iterator["tarfile.TarInfo"]:
    while (member := tar.next()) is not None:
        yield member


def _head(tar: "tarfile.TarFile", members: list["tarfile.TarInfo"]) -> tuple[bytes, bytes]:
    """Take manifest.json and manifest.sig, the first two members, off `members`."""
    if len(members) < 2 or [m.name for m in members[:2]] != [MANIFEST, SIGNATURE]:
        raise CommandError("bad_bundle", f"a bundle starts with {MANIFEST} and {SIGNATURE}")
    manifest, sig = members[0], members[1]
    del members[:2]
    for member, limit in ((manifest, MAX_MANIFEST_BYTES), (sig, MAX_SIG_BYTES)):
        if not member.isreg() or member.size > limit:
            raise CommandError("bad_bundle", f"{member.name}: not a file under {limit} bytes")
    return _open(tar, manifest).read(), _open(tar, sig).read()


def _open(tar: "tarfile.TarFile", member: "tarfile.TarInfo") -> IO[bytes]:
    f = tar.extractfile(member)
    if f is None:
        raise CommandError("bad_bundle", f"{member.name}: not a regular file")
    return f


def _sha256(f: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _check_target(manifest: Manifest, target: Target) -> None:
    info = manifest.target
    misfits = manifest.misfits(target)
    if info.machine != target.machine or info.python != target.python_text or misfits:
        detail = f" ({', '.join(misfits[:3])} would not run here)" if misfits else ""
        raise CommandError(
            "wrong_platform",
            f"the bundle is for {info.machine}, CPython {info.python} (glibc {info.glibc}+); "
            f"this node is {target.describe()}{detail}",
        )
