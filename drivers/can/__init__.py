"""Vehicle CAN bus (J1939 / FMS): `can.bus` reads an adapter, `can.replay` a candump log.

Both emit `core.events.J1939Signals` for every message of the DBC (config/fms.dbc by
default) and `core.events.ActiveFaults` for DM1, through one receive path:
python-can → J1939 identifier → transport protocol (BAM) → DBC or DM1 decoding.
"""
