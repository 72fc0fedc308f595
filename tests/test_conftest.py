"""What the shared fixtures tell a contributor is true of this checkout."""

import re
import shlex

from tests.conftest import not_installed
from tests.helpers.nodes import ROOT


def test_a_missing_program_names_the_repos_test_command_which_installs_it() -> None:
    """It once said `make test`: there is no Makefile."""
    command = re.findall(r"`([^`]+)`", not_installed("mosquitto"))
    assert command == ["./dev test"]
    script = ROOT / shlex.split(command[0])[0]
    assert script.is_file()
    branch = re.search(r"^\s*test\)\n(.*?);;", script.read_text(), flags=re.M | re.S)
    assert branch is not None, "./dev has no test command"
    installs = re.search(r"apt_install ([^\n]+)", branch.group(1))
    assert installs is not None
    assert "mosquitto" in installs.group(1).split()
