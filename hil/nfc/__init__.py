"""PN532 NFC reader rig: the emulator on a pty, its frames and cards, a tap-latency probe."""
