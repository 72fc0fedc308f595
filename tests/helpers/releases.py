"""A node's system tree in a temporary root, with releases made cheaply from this checkout.

A real release is a venv built from a signed bundle (the end-to-end tests install one). For
the releases that must fail in a given way, and for the release a node starts on, a copy of
this tree is enough: `fake_release` copies `edged/` and `drivers/` into `<version>/src`
(with a patch applied to make it misbehave), sets its `edged.__version__` (and a dist-info)
so `edged --version` and the birth say that version, and makes a venv whose only content is a .pth naming that copy and
the test venv's site-packages (for the dependencies). It starts in a second; it runs the
same way a real release does (`venv/bin/python -P -m edged`).
"""

import json
import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edged.release.launcher import ReleaseTree
from edged.release.schemas import SCHEMAS
from edged.update.install import NOT_RUN
from tests.helpers.nodes import ROOT
from tests.helpers.service import BASE_PYTHON

LAUNCHER = ROOT / "edged" / "release" / "launcher.py"
DEV_SITE = sysconfig.get_paths()["purelib"]
PACKAGES = tuple(
    name.removesuffix("*")
    for name in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
"""The packages a release installs (core, edged, drivers), as pyproject.toml lists them."""
Patch = Callable[[str], str]


@dataclass
class NodeRoot:
    """ROOT/opt/edged (launcher, releases), ROOT/etc/edged, ROOT/var/lib/edged."""

    path: Path

    @property
    def releases(self) -> Path:
        return self.path / "opt/edged/releases"

    @property
    def tree(self) -> ReleaseTree:
        return ReleaseTree(self.releases)

    @property
    def config(self) -> Path:
        return self.path / "etc/edged/edged.toml"

    @property
    def data(self) -> Path:
        return self.path / "var/lib/edged"

    @property
    def outbox(self) -> Path:
        """The outbox the config names."""
        return Path(tomllib.loads(self.config.read_text())["outbox"]["path"])

    def status(self) -> dict[str, object]:
        return self.tree.status()


def make_root(path: Path) -> NodeRoot:
    node = NodeRoot(path)
    node.releases.mkdir(parents=True)
    node.config.parent.mkdir(parents=True)
    node.data.mkdir(parents=True)
    shutil.copy2(LAUNCHER, path / "opt/edged/launcher.py")
    return node


def fake_release(
    tree: ReleaseTree,
    version: str,
    patches: Mapping[str, Patch] | None = None,
    *,
    schemas: Mapping[str, Mapping[str, int]] | None = None,
) -> Path:
    """A release `version` of this checkout's code, each `patches[relpath]` applied."""
    dest = tree.path(version)
    src = dest / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    for rel, patch in (patches or {}).items():
        file = src / rel
        before = file.read_text()
        after = patch(before)
        assert after != before, f"the patch of {rel} changed nothing"
        file.write_text(after)
    init = src / "edged/__init__.py"  # the version edged reports (`edged.__version__`)
    text, found = re.subn(
        r'^__version__ = ".*"$', f"__version__ = {version!r}", init.read_text(), flags=re.M
    )
    assert found == 1, "edged/__init__.py no longer sets __version__ on one line"
    init.write_text(text)
    info = src / f"edged-{version}.dist-info"  # what pip and importlib.metadata read
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edged\nVersion: {version}\n")
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(dest / "venv")], check=True)
    site = next((dest / "venv/lib").glob("python3*/site-packages"))
    (site / "release.pth").write_text(f"{src}\n{DEV_SITE}\n")
    # as install.sh and an update do: the unit runs the release with -OO, which reads the
    # .opt-2.pyc files (without them each start compiles every module, slowly)
    subprocess.run(
        [BASE_PYTHON, "-m", "compileall", "-q", "-o", "2", "-j", "0", "-x", NOT_RUN, str(src),
         DEV_SITE],
        check=True, capture_output=True,
    )  # fmt: skip
    record = {
        "version": version,
        "schemas": dict(schemas or {k: v.as_json() for k, v in SCHEMAS.items()}),
        "fake": True,
    }
    (dest / "release.json").write_text(json.dumps(record))
    return dest


def first_release(node: NodeRoot, version: str = "0.1.0") -> None:
    """What install.sh lays out: one release, `current` naming it."""
    fake_release(node.tree, version)
    os.symlink(version, node.releases / "current")
