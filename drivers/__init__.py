"""Hardware drivers: one sub-package per device kind, each with real and simulated backends."""
