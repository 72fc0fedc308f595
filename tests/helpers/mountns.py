"""Mount namespaces for tests that must show a program a file of the system's (Chromium's
/etc/chromium/policies) without writing it: a bind mount seen by that program alone."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest


def private_mount(over: Path) -> list[str]:
    """The command that mounts its first argument over `over` in a mount namespace of its
    own, then runs the rest: `[*private_mount(over), source, program, *args]`."""
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", f'mount --bind "$0" {shlex.quote(str(over))} && exec "$@"',
    ]  # fmt: skip


def need_private_mounts(over: Path) -> None:
    """Skip the calling module unless a namespace of its own may mount over `over` here
    (root, util-linux, and the right to mount: a container's root may lack CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip(
            f"mounts over {over} in a private mount namespace: run as root", allow_module_level=True
        )
    if not over.is_dir() or shutil.which("unshare") is None:
        pytest.skip(f"needs {over} and unshare (util-linux)", allow_module_level=True)
    probe = subprocess.run(
        [*private_mount(over), str(over), "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(
            "root here may not mount in a namespace of its own (a container without "
            "CAP_SYS_ADMIN, such as Docker's default)",
            allow_module_level=True,
        )
