"""An NMEA GPS receiver emulated on a pty (emulator.py) and the logs it replays (logs/)."""
