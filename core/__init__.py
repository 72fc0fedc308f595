"""The floor that `drivers/` and `edged/` both stand on: errors, events, geometry, paths,
counters, the bus, and the driver protocol with its one context. It imports nothing of ours."""
