"""The bundle download against a real HTTPS server: resumed, capped, and refused when the
file is not the size the signed command said."""

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edged.config.update import UpdateConfig
from edged.errors import CommandError
from edged.update.download import (
    Cancelled,
    Dropped,
    PastDeadline,
    TooSlow,
    Transfer,
    check_url,
    fetch,
)
from edged.update.job import WORK, Job, WorkDir
from tests.helpers.disk import mounted_tmpfs
from tests.helpers.fileserver import FileServer
from tests.helpers.relay import relay
from tests.update.test_manager import manager
from tests.update.test_work_dir_faults import recording, run_until_failed


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


def apply_args(url: str, blob: Path) -> dict[str, object]:
    """`update.apply`'s arguments for `blob` served at `url`."""
    return {"version": "0.2.0", "url": url, "size": blob.stat().st_size,
            "sha256": hashlib.sha256(blob.read_bytes()).hexdigest()}  # fmt: skip


def ended_within(seconds: float, fn: Callable[[], None]) -> BaseException | None:
    """What `fn()` raised (None: it returned), run in a thread; fails if it still runs
    after `seconds` (a trickled download went on for days)."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            out.append(exc)
        else:
            out.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, f"the download still runs after {seconds} s"
    return out[0]


TRICKLE = {"rate": 2, "chunk": 1}
"""A byte every half second, each a TLS record of its own: no read timeout ever trips."""


@pytest.mark.parametrize("head", [False, True], ids=["the file", "its head"])
def test_a_server_that_trickles_is_too_slow_within_a_window(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path, head: bool
) -> None:
    url = server.serve("b", blob, **TRICKLE, slow_head=int(head))
    t = transfer(url, blob, tmp_path, server_pki, min_bytes_per_s=1000, slow_s=1.0)
    started = time.monotonic()
    error = ended_within(10, lambda: fetch(t, lambda _: None, threading.Event()))
    assert isinstance(error, TooSlow), error
    assert "min_bytes_per_s = 1000" in str(error)
    assert time.monotonic() - started < 3


def test_a_link_of_tens_of_kb_per_s_is_not_too_slow(
    server: FileServer, tmp_path: Path, server_pki: Path
) -> None:
    """20 kB/s in writes of a TCP segment (LTE at a bad spot), judged over windows of
    1 s at the default minimum: every window passes."""
    blob = tmp_path / "small.bin"
    blob.write_bytes(bytes(range(256)) * 240)  # 60 kB: 3 s
    url = server.serve("b", blob, rate=20_000, chunk=1400)
    minimum = UpdateConfig().min_bytes_per_s
    t = transfer(url, blob, tmp_path, server_pki, min_bytes_per_s=minimum, slow_s=1.0)
    assert ended_within(20, lambda: fetch(t, lambda _: None, threading.Event())) is None
    assert t.part.read_bytes() == blob.read_bytes()


async def test_a_server_too_slow_three_connections_in_a_row_fails_the_update(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    """The old download read on for as long as the server kept a byte coming within the
    read timeout: the update said `downloading` for days. Now each connection is ended
    after a window, resumed from its bytes, and the third in a row fails the job."""
    m = manager(tmp_path)
    m.config = UpdateConfig(min_free_mb=0, min_bytes_per_s=1000, slow_s=0.5)
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    status = await run_until_failed(m, said, apply_args(server.serve("b", blob, **TRICKLE), blob))
    assert status.code == "download_failed", status
    assert "3 connections in a row" in (status.reason or ""), status.reason
    assert "min_bytes_per_s" in (status.reason or "")
    assert len(server.requests) == 3
    assert [r.start for r in server.requests] == sorted(r.start for r in server.requests)
    assert not list((tmp_path / "releases" / WORK).glob("*.part")), "its bytes are kept"


async def test_connections_that_bring_a_window_s_worth_before_slowing_go_on_to_the_end(
    server: FileServer, tmp_path: Path, server_pki: Path
) -> None:
    """A bus passing three bad spots, each after megabytes came fine, is no trickling
    server: the count of slow connections in a row starts again after one that progressed,
    and the download ends with the whole file (each connection here brings 2 kB at once,
    then a byte every half second)."""
    blob = tmp_path / "small.bin"
    blob.write_bytes(os.urandom(7_000))
    m = manager(tmp_path)
    m.config = UpdateConfig(min_free_mb=0, min_bytes_per_s=1000, slow_s=0.5, retry_max_s=1)
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0)
        url = server.serve("b", blob, fast_first=2_000, **TRICKLE)
        await m.command_apply(apply_args(url, blob))
        for _ in range(1200):  # the whole file, then its check (random bytes: bad_bundle)
            if any(s.state in ("verifying", "failed") for s in said):
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
    assert "verifying" in [s.state for s in said], said[-1]
    assert len(server.requests) >= 4  # 7 kB at 2 kB and more a connection
    assert [r.start for r in server.requests] == sorted(r.start for r in server.requests)


def test_a_connection_still_bringing_bytes_is_ended_at_the_deadline(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    """4 kB/s passes the minimum window after window: only the download's deadline ends it
    (1.5 MB would take six minutes)."""
    url = server.serve("b", blob, rate=4000, chunk=1400)
    t = transfer(url, blob, tmp_path, server_pki, min_bytes_per_s=1000, slow_s=1.0,
                 deadline=time.monotonic() + 1.5)  # fmt: skip
    started = time.monotonic()
    error = ended_within(10, lambda: fetch(t, lambda _: None, threading.Event()))
    assert isinstance(error, PastDeadline), error
    assert "download_max_s" in str(error)
    assert time.monotonic() - started < 3


HANG_UP = {**TRICKLE, "cut_each": 2}
"""A byte every half second, and the connection closed after two: each connection ends
before a window of `slow_s` is judged, so it is a drop, never too slow."""


async def test_a_server_that_hangs_up_each_trickled_connection_fails_at_download_max_s(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    """Drops are retried for as long as the job lasts, and a drop resets the count of slow
    connections: a server that hangs up (or stalls past the read timeout) before a window
    is judged kept the update `downloading` for as long as it liked, two bytes a
    connection. `[update] download_max_s` bounds the whole download."""
    m = manager(tmp_path)
    m.config = UpdateConfig(
        min_free_mb=0, min_bytes_per_s=1000, slow_s=2, retry_max_s=1, download_max_s=3
    )
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    started = time.monotonic()
    status = await run_until_failed(m, said, apply_args(server.serve("b", blob, **HANG_UP), blob))
    assert status.code == "download_failed", status
    assert "download_max_s" in (status.reason or ""), status.reason
    assert time.monotonic() - started < 6
    assert len(server.requests) >= 2, "the drops were retried until then"
    assert not list((tmp_path / "releases" / WORK).glob("*.part"))


async def test_the_time_a_download_took_before_a_restart_counts_against_download_max_s(
    server: FileServer, blob: Path, tmp_path: Path, server_pki: Path
) -> None:
    """A restart (a power cut each evening) must not give the download its whole time
    again: job.json keeps what it took."""
    m = manager(tmp_path)
    m.config = UpdateConfig(min_free_mb=0, download_max_s=100)
    m.host.ca_file = server_pki / "ca.crt"
    WorkDir(tmp_path / "releases").save(
        Job(id="j", version="0.2.0", url=server.serve("b", blob, **TRICKLE),
            size=blob.stat().st_size, sha256=hashlib.sha256(blob.read_bytes()).hexdigest(),
            switch="now", download_s=99.5)
    )  # fmt: skip
    said = recording(m)
    status = await run_until_failed(m, said)
    assert status.code == "download_failed", status
    assert "download_max_s" in (status.reason or ""), status.reason


async def test_time_without_a_connection_to_the_file_server_does_not_count_against_the_deadline(
    server: FileServer, tmp_path: Path, server_pki: Path
) -> None:
    """A truck out of coverage (no route, no name, nothing answering) waits for the file
    server with its job for as long as that lasts: `download_max_s` bounds a server that
    answers and then fails, not the road. Here the link is down for twice download_max_s,
    then up: the download goes on to the end (it failed `download_failed` at 1 s)."""
    blob = tmp_path / "small.bin"
    blob.write_bytes(os.urandom(7_000))
    m = manager(tmp_path)
    m.config = UpdateConfig(min_free_mb=0, retry_max_s=1, download_max_s=1)
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    down = socket.socket()  # bound, never listening: each connection is refused
    down.bind(("127.0.0.1", 0))
    port = down.getsockname()[1]
    url = server.serve("b", blob).replace(f":{server.port}/", f":{port}/")
    run = asyncio.create_task(m.run())
    link = None
    try:
        await asyncio.sleep(0)
        await m.command_apply(apply_args(url, blob))
        await asyncio.sleep(2.5)
        down.close()
        link = await relay(server.port, port=port)
        for _ in range(200):  # the whole file, then its check (random bytes: bad_bundle)
            if any(s.state in ("verifying", "failed") for s in said):
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
        down.close()
        if link is not None:
            link.close()
    assert "verifying" in [s.state for s in said], said[-1]
    assert len(server.requests) == 1


def test_the_minimum_rate_stays_under_a_bandwidth_cap() -> None:
    """A node capped at 800 B/s would otherwise find every download too slow."""
    assert UpdateConfig(max_bytes_per_s=800).min_rate() == 400
    assert UpdateConfig().min_rate() == UpdateConfig().min_bytes_per_s
