"""What the uplink says about a failed TLS connection (`edged.uplink.tlsfail`: which side
refused what, the node's and the broker's certificates read back, the clocks) loads on the
first connection that fails, not at every start (#19). `tests/helpers/daemon_imports`
cannot pin it: its node has no broker, so its first connection fails."""

import subprocess
import sys

from tests.helpers.nodes import ROOT

CODE = "import sys, edged.cli.main, edged.node; print('edged.uplink.tlsfail' in sys.modules)"


def test_what_edged_run_imports_leaves_the_tls_failure_advice_out() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
