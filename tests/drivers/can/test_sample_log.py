"""The committed sample bus log is what its generator writes, and stays small."""

from pathlib import Path

from hil.can.make_log import DEFAULT_OUT, write_log


def test_committed_log_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = tmp_path / "shuttle-day.log"
    write_log(fresh)
    assert fresh.read_bytes() == DEFAULT_OUT.read_bytes(), "run `python -m hil.can.make_log`"


def test_committed_log_is_under_2_mb() -> None:
    assert DEFAULT_OUT.stat().st_size < 2_000_000
