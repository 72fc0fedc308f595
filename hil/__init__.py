"""Hardware-in-the-loop rig: device emulators that speak the real wire protocols on ptys."""
