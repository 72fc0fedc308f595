"""A node on real pins never loads gpiozero's mock pins nor the rig's control socket
(`drivers.gpio.mock`, `drivers.gpio.mockwire`): they are the demo's, the rig's and the
tests' (#19: ~3 ms of a start here, ~18 ms at a sixth of a Pi Zero 2 W's core). A separate
interpreter loads a config with the GPIO driver on the Pi's own pin factory, as `edged run`
does before it starts the drivers."""

import json
import subprocess
import sys

from tests.helpers.nodes import ROOT

CHILD = r"""
import json, sys
from edged.config.loader import parse_config

config = parse_config(sys.argv[1])
board = config.drivers[0].settings
print(json.dumps({
    "factory": board.pin_factory,
    "loaded": sorted(m for m in sys.modules if "mock" in m and m.split(".")[0] != "pydantic"),
}))
"""

CONFIG = """
[node]
fleet = "test"
id = "door-1"
profile = "venue"

[[drivers]]
name = "gpio"
driver = "gpio.gpiozero"
[drivers.options]
pin_factory = "default"
lock = { pin = 22 }
doors = [{ name = "door", pin = 17 }]
"""


def test_a_config_on_real_pins_loads_the_gpio_driver_without_the_mock_pins() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, CONFIG],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"factory": "default", "loaded": []}
