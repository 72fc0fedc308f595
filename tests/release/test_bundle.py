"""A node opens a bundle only when everything in it is what an update key signed."""

import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.errors import CommandError
from edged.release.bundle import extract_wheels, verify_bundle, write_bundle
from edged.release.manifest import manifest_bytes, sign_manifest
from edged.release.platforms import TARGETS, this_machine
from tests.release.support import KEY, KEYS, WEAK, make_bundle, manifest_for, wheels

HERE = this_machine()


def refused(path: Path, code: str, version: str | None = "0.2.0") -> str:
    with pytest.raises(CommandError) as info:
        verify_bundle(path, KEYS, version=version, target=HERE)
    assert info.value.code == code, info.value
    return info.value.message


def test_a_bundle_signed_by_an_update_key_verifies_and_extracts(tmp_path: Path) -> None:
    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0", target=HERE)
    assert bundle.kid == "release" and bundle.manifest.version == "0.2.0"
    out = extract_wheels(bundle, tmp_path / "x")
    originals = {p.name: p.read_bytes() for p in wheels(tmp_path / "again")}
    assert {p.name: p.read_bytes() for p in out} == originals


def test_a_key_the_node_does_not_know_is_a_bad_signature(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = make_bundle(tmp_path / "b.bundle", key=Ed25519PrivateKey.generate(), kid="stranger")
    refused(path, "bad_signature")


def test_a_known_key_without_the_update_scope_is_forbidden(tmp_path: Path) -> None:
    message = refused(make_bundle(tmp_path / "b.bundle", key=WEAK, kid="ops"), "forbidden")
    assert "'ops'" in message and "update" in message


def test_a_kid_naming_the_update_key_over_another_keys_signature_is_refused(tmp_path: Path) -> None:
    refused(make_bundle(tmp_path / "b.bundle", key=WEAK, kid="release"), "bad_signature")


def test_a_manifest_changed_after_signing_is_a_bad_signature(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    good = manifest_bytes(manifest_for(files))
    sig = sign_manifest(good, KEY, "release")
    evil = good.replace(b'"0.2.0"', b'"9.9.9"')
    write_bundle(tmp_path / "b.bundle", evil, sig, files)
    refused(tmp_path / "b.bundle", "bad_signature", version=None)


def test_a_wheel_changed_after_signing_is_a_hash_mismatch(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    m = manifest_for(files)
    files[2].write_bytes(files[2].read_bytes()[:-1] + b"X")
    raw = manifest_bytes(m)
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), files)
    refused(tmp_path / "b.bundle", "hash_mismatch")


def test_a_file_the_manifest_does_not_name_is_refused(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    m = manifest_for(files)
    extra = tmp_path / "w" / "evil-1.0-py3-none-any.whl"
    extra.write_bytes(b"payload")
    raw = manifest_bytes(m)
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), [*files, extra])
    refused(tmp_path / "b.bundle", "bad_bundle")


def test_a_file_the_manifest_names_but_the_bundle_lacks_is_refused(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    m = manifest_for(files)
    raw = manifest_bytes(m)
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), files[:2])
    assert "missing" in refused(tmp_path / "b.bundle", "bad_bundle")


def test_a_symlink_in_place_of_a_wheel_is_refused(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    m = manifest_for(files)
    raw = manifest_bytes(m)
    path = tmp_path / "b.bundle"
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("manifest.json", raw),
            ("manifest.sig", sign_manifest(raw, KEY, "release")),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for f in files[:2]:
            tar.add(f, arcname=f"wheels/{f.name}")
        link = tarfile.TarInfo(f"wheels/{files[2].name}")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    refused(path, "bad_bundle")


def test_a_path_outside_wheels_in_the_manifest_is_refused(tmp_path: Path) -> None:
    files = wheels(tmp_path / "w")
    data = json.loads(manifest_bytes(manifest_for(files)))
    data["files"][0]["path"] = "wheels/../../usr/bin/python3.whl"
    raw = json.dumps(data).encode()
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), files)
    refused(tmp_path / "b.bundle", "bad_bundle")


def test_another_version_than_the_command_said_is_refused(tmp_path: Path) -> None:
    refused(make_bundle(tmp_path / "b.bundle"), "wrong_version", version="0.3.0")


def test_a_bundle_for_another_machine_is_refused(tmp_path: Path) -> None:
    other = TARGETS["aarch64"] if HERE.machine != "aarch64" else TARGETS["armv7l"]
    files = wheels(tmp_path / "w")
    path = make_bundle(tmp_path / "b.bundle", manifest=manifest_for(files, target=other))
    assert HERE.machine in refused(path, "wrong_platform")


def test_a_truncated_bundle_is_refused(tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "b.bundle")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CommandError) as info:
        verify_bundle(path, KEYS, version="0.2.0", target=HERE)
    assert info.value.code in ("bad_bundle", "hash_mismatch")


def test_something_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.bundle"
    path.write_bytes(b"<html>404 not found</html>" * 100)
    refused(path, "bad_bundle")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True), value=st.integers(0, 255))
def test_no_changed_byte_makes_a_bundle_install_other_content(
    tmp_path_factory: pytest.TempPathFactory, where: float, value: int
) -> None:
    tmp = tmp_path_factory.mktemp("flip")
    path = make_bundle(tmp / "b.bundle")
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    data[at] = value
    path.write_bytes(bytes(data))
    originals = {p.name: p.read_bytes() for p in wheels(tmp / "orig")}
    try:
        bundle = verify_bundle(path, KEYS, version="0.2.0", target=HERE)
    except CommandError:
        return
    out = extract_wheels(bundle, tmp / "x")
    assert {p.name: p.read_bytes() for p in out} == originals


@pytest.mark.parametrize(
    "version", ["../../0.2.0", "0.2.0/../../tmp", "0.2.0\nx", "current", " 0.2.0"]
)
def test_a_signed_manifest_whose_version_is_no_release_name_is_refused(
    tmp_path: Path, version: str
) -> None:
    """The version names the release's directory: a whole name, checked as the launcher
    checks it (pydantic's `pattern` alone only searches the string)."""
    files = wheels(tmp_path / "w")
    m = manifest_for(files).model_dump(mode="json") | {"version": version}
    raw = json.dumps(m).encode()
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), files)
    assert "version" in refused(tmp_path / "b.bundle", "bad_bundle", version=None)


@pytest.mark.parametrize("version", ["trial.json", "outcome.json"])
def test_a_signed_release_named_like_a_record_of_the_release_tree_is_refused(
    tmp_path: Path, version: str
) -> None:
    """The version is the release's directory, beside trial.json and outcome.json: a
    release of that name (its directory left by a power cut mid-install) made every start
    of the launcher fail reading trial.json (IsADirectoryError, exit 70): a node that no
    longer starts, which no step of an update may leave (docs/updates.md). Refused like
    `current` and `previous`. Source: CVE-2007-4559 / PEP 706's lesson, names from an
    archive never name what is already there."""
    files = wheels(tmp_path / "w", version)
    m = manifest_for(files).model_dump(mode="json") | {"version": version}
    raw = json.dumps(m).encode()
    write_bundle(tmp_path / "b.bundle", raw, sign_manifest(raw, KEY, "release"), files)
    assert "version" in refused(tmp_path / "b.bundle", "bad_bundle", version=None)


HEADER_BYTES = 32 << 20


def _signed_bundle_with(path: Path, header: str) -> Path:
    """A bundle an update key signed whose first member carries a tar header of
    HEADER_BYTES (a pax record, a GNU long name) or a GNU sparse map: none is signed, and
    tarfile reads each whole into memory as it reads the member list, before the
    signature is checked."""
    files = wheels(path.parent / "w")
    raw = manifest_bytes(manifest_for(files))
    fmt = tarfile.GNU_FORMAT if header != "pax" else tarfile.PAX_FORMAT
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in (("manifest.json", raw),
                           ("manifest.sig", sign_manifest(raw, KEY, "release"))):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name == "manifest.json" and header == "pax":
                info.pax_headers = {"comment": "x" * HEADER_BYTES}
            if name == "manifest.json" and header == "longname":
                info.name = "./" * (HEADER_BYTES // 2 - 8) + "manifest.json"
            tar.addfile(info, io.BytesIO(data))
        for f in files:
            tar.add(f, arcname=f"wheels/{f.name}")
    if header == "sparse":  # GNU type S, its map continued in extension blocks
        blocks = bytearray(path.read_bytes())
        head = blocks[:512]
        head[156:157] = tarfile.GNUTYPE_SPARSE
        head[482:483] = b"\x01"  # isextended: an extension block follows
        head[148:156] = b" " * 8
        head[148:155] = b"%06o\x00" % sum(head)
        ext = bytearray(b"%011o\x00%011o\x00" % (1, 1) * 21 + bytes(8))  # 21 pieces
        ext[504:505] = b"\x01"  # and another, for HEADER_BYTES
        more = bytes(ext) * (HEADER_BYTES // 512)
        path.write_bytes(bytes(head) + more + bytes(512) + bytes(blocks[512:]))
    return path


def refused_measured(path: Path) -> tuple[str, int]:
    """`path` refused `bad_bundle`: the refusal's message, and the peak of Python's memory
    while it was read."""
    import tracemalloc

    tracemalloc.start()
    try:
        message = refused(path, "bad_bundle")
        return message, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("header", ["pax", "longname", "sparse"])
def test_a_tar_header_no_bundle_needs_is_refused_before_it_is_read(
    tmp_path: Path, header: str
) -> None:
    """Unsigned, and read before the signature is: a 32 MB one took ~100 MB of memory
    (edged's cgroup allows 150 MB, pip included): a bundle that kills the node."""
    path = _signed_bundle_with(tmp_path / "b.bundle", header)
    message, peak = refused_measured(path)
    assert peak < HEADER_BYTES // 8, f"{peak >> 20} MB read for a refusal ({message})"


MAP_BYTES = 2 << 20


def test_a_pax_sparse_map_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A small pax record (GNU.sparse.major 1, minor 0) makes tarfile read the next
    member's data as a sparse map, number by number, for as long as the file goes on:
    a header record under the 64 KiB bound, of a regular member, yet ~25 bytes of memory
    for each byte of the map, all before the signature is checked."""
    files = wheels(tmp_path / "w")
    raw = manifest_bytes(manifest_for(files))
    path = tmp_path / "b.bundle"
    sparse_map = b"%d\n" % (MAP_BYTES // 4) + b"1\n" * (MAP_BYTES // 2)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(sparse_map)
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
        tar.addfile(info, io.BytesIO(sparse_map))
        sig = sign_manifest(raw, KEY, "release")
        info = tarfile.TarInfo("manifest.sig")
        info.size = len(sig)
        tar.addfile(info, io.BytesIO(sig))
    message, peak = refused_measured(path)
    assert peak < MAP_BYTES // 4, f"{peak >> 20} MB read for a refusal ({message})"


def _pax_record(keys: int) -> dict[str, str]:
    """A pax record just under the 64 KiB bound, of `keys` short keywords."""
    return {f"k{j:05d}": "" for j in range(keys)}


def _bundle_of_many_records(path: Path, layout: str) -> Path:
    """Every member under the bound of one record, but the records add up: one on each of
    MAX_FILES members ("spread"), or 200 in a row before one member ("chained")."""
    from edged.release.manifest import MAX_FILES

    record = _pax_record(5800)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if layout == "chained":
            head = tarfile.TarInfo("x")
            head.pax_headers = record
            one = head.tobuf(tarfile.PAX_FORMAT)[:-512]  # the record without its member
            tar.fileobj.write(one * 200)
            tar.offset += len(one) * 200
        for i in range(MAX_FILES if layout == "spread" else 1):
            info = tarfile.TarInfo(f"wheels/{i}.whl")
            if layout == "spread":
                info.pax_headers = record
            tar.addfile(info, io.BytesIO(b""))
    return path


@pytest.mark.parametrize("layout", ["spread", "chained"])
def test_tar_header_records_are_bounded_in_all_not_only_each(tmp_path: Path, layout: str) -> None:
    """tarfile keeps each member's pax record as a dict (~10 bytes of memory per byte of
    record) with the member list, and reads records in a row recursively: 64 KiB each
    took ~200 MB over a bundle's 400 members, ~110 MB for 200 in a row (a RecursionError
    past ~330)."""
    path = _bundle_of_many_records(tmp_path / "b.bundle", layout)
    message, peak = refused_measured(path)
    assert peak < 8 << 20, f"{peak >> 20} MB read for a refusal ({message})"
