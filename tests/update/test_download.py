"""The bundle download against a real HTTPS server: resumed, capped, and refused when the
file is not the size the signed command said."""

import threading
import time
from pathlib import Path

import pytest

from edged.errors import CommandError
from edged.update.download import Cancelled, Dropped, Transfer, check_url, fetch
from tests.helpers.disk import mounted_tmpfs
from tests.helpers.fileserver import FileServer


def transfer(url: str, blob: Path, tmp_path: Path, pki: Path, **kw: object) -> Transfer:
    return Transfer(url, blob.stat().st_size, tmp_path / "x.part", ca_file=pki / "ca.crt", **kw)  # type: ignore[arg-type]


def test_a_download_arrives_whole(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    seen: list[int] = []
    t = transfer(server.serve("b", blob), blob, tmp_path, server_pki)
    fetch(t, seen.append, threading.Event())
    assert t.part.read_bytes() == blob.read_bytes()
    assert seen[-1] == blob.stat().st_size and seen == sorted(seen)


def test_a_cut_connection_is_resumed_from_where_it_stopped(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    t = transfer(server.serve("b", blob, cut_after=600_000), blob, tmp_path, server_pki)
    with pytest.raises(Dropped):
        fetch(t, lambda _: None, threading.Event())
    kept = t.part.stat().st_size
    assert 0 < kept <= 600_000
    fetch(t, lambda _: None, threading.Event())
    assert t.part.read_bytes() == blob.read_bytes()
    assert [(r.status, r.start) for r in server.requests] == [(200, 0), (206, kept)]


def test_a_file_of_another_size_is_refused_before_it_is_read(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    url = server.serve("b", blob)
    t = Transfer(url, blob.stat().st_size + 10, tmp_path / "x.part", ca_file=server_pki / "ca.crt")
    with pytest.raises(CommandError) as info:
        fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "size_mismatch"
    assert not t.part.exists() or t.part.stat().st_size == 0


def test_a_truncated_file_on_the_server_is_a_size_mismatch_even_on_resume(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    url = server.serve("b", blob, truncate_to=1_000_000)
    t = transfer(url, blob, tmp_path, server_pki)
    with pytest.raises(CommandError) as info:
        fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "size_mismatch"
    t.part.write_bytes(blob.read_bytes()[:1_200_000])  # what an earlier, longer copy left
    with pytest.raises(CommandError) as info:
        fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "size_mismatch"


def test_a_missing_file_is_a_refusal_not_a_retry(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    t = transfer(server.url("nothing-here"), blob, tmp_path, server_pki)
    with pytest.raises(CommandError) as info:
        fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "download_failed" and "404" in info.value.message


def test_a_server_certificate_outside_the_fleet_ca_is_refused(
    server: FileServer, blob: Path, tmp_path: Path
) -> None:
    t = Transfer(server.serve("b", blob), blob.stat().st_size, tmp_path / "x.part", ca_file=None)
    with pytest.raises(CommandError) as info:
        fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "download_failed" and "ca_file" in info.value.message


def test_a_server_name_the_certificate_does_not_carry_is_refused(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    server.serve("b", blob)
    url = server.url("b", host="127.0.0.2")  # the certificate names 127.0.0.1 and localhost
    t = Transfer(url, blob.stat().st_size, tmp_path / "x.part", ca_file=server_pki / "ca.crt")
    with pytest.raises((CommandError, Dropped)):
        fetch(t, lambda _: None, threading.Event())
    assert not t.part.exists()


@pytest.mark.parametrize(
    "url", ["http://files/edged.bundle", "ftp://files/x", "https:///x", "https://u:p@files/x"]
)
def test_only_plain_https_urls_are_taken(url: str) -> None:
    with pytest.raises(CommandError) as info:
        check_url(url)
    assert info.value.code == "bad_args"


def test_the_bandwidth_cap_holds(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    rate = 1_000_000
    t = transfer(server.serve("b", blob), blob, tmp_path, server_pki, max_bytes_per_s=rate)
    started = time.monotonic()
    fetch(t, lambda _: None, threading.Event())
    took = time.monotonic() - started
    assert took >= 0.9 * blob.stat().st_size / rate, f"{took:.2f} s"


def test_a_cancelled_download_stops(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    cancel = threading.Event()
    t = transfer(server.serve("b", blob), blob, tmp_path, server_pki, max_bytes_per_s=200_000)
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Cancelled):
        fetch(t, lambda _: None, cancel)
    assert t.part.stat().st_size < blob.stat().st_size


def test_a_disk_that_fills_up_mid_download_is_no_space_not_an_internal_error(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    """The space was checked before; the outbox or the logs may take it meanwhile. The job
    must fail saying so (its files then go), not as `internal` with a traceback."""
    with mounted_tmpfs(tmp_path / "small", "1m") as disk:
        t = Transfer(
            server.serve("b", blob),
            blob.stat().st_size,
            disk / "x.part",
            ca_file=server_pki / "ca.crt",
        )
        with pytest.raises(CommandError) as info:
            fetch(t, lambda _: None, threading.Event())
    assert info.value.code == "no_space" and "disk filled up" in info.value.message


@pytest.mark.parametrize("url", ["https://files.test:abc/b", "https://files.test:99999/b",
                                 "https://[::1/b"])  # fmt: skip
def test_a_url_whose_port_or_host_cannot_be_read_is_bad_args_before_the_job_starts(
    url: str,
) -> None:
    """urlsplit reads the port only when asked (`.port` raises ValueError): such an
    update.apply was accepted, then its job failed `internal` with a ValueError (or the
    command itself replied `internal`). RFC 3986 §3.2.3: a port is digits."""
    with pytest.raises(CommandError) as info:
        check_url(url)
    assert info.value.code == "bad_args"
