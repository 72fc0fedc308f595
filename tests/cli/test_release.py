"""`edgectl release show`: what a bundle holds, and the `update.apply` arguments for a URL."""

import json
from pathlib import Path

import pytest

from edged.cli.ctl import main
from tests.release.support import make_bundle


def test_show_gives_the_update_apply_arguments_for_an_https_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    assert main(["release", "show", str(bundle), "--url", "https://files.test/b.bundle"]) == 0
    apply = json.loads(capsys.readouterr().out)["update.apply"]
    assert apply["url"] == "https://files.test/b.bundle"
    assert apply["size"] == bundle.stat().st_size


@pytest.mark.parametrize("url", ["http://files.test/b.bundle", "https://u:p@files.test/b"])
def test_show_refuses_a_url_every_node_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    assert main(["release", "show", str(bundle), "--url", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--url: url must" in captured.err
