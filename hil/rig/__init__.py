"""The hardware-in-the-loop rig: see hil/rig/rig.py and `python -m hil --help`."""
