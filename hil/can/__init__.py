"""CAN bus rig: a synthetic FMS bus, the sample log generator, an slcan adapter on a pty."""
