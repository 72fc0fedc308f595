"""The preset dictionary of the `deflate` encoding: what edged's payloads usually contain.

Deflate finds repeats only within what it has seen; a payload of 250 bytes repeats little
of itself, but nearly all of its keys and much of its punctuation are in this text, so they
cost a back-reference each. It is part of the wire format: **never edit it**. A better one
is added as the next id (`DICTIONARIES`), and readers keep every id they ever knew.
The most frequent payloads are last (deflate codes near distances in fewer bits).
"""

_EXAMPLES_1 = (
    b'{"state":"online","version":"0.1.0","profile":"shuttle","name":"","config_hash":'
    b'"0123456789abcdef","drivers":["gps:gps.sim","can:can.replay","front-reader:nfc.sim",'
    b'"gpio:gpio.gpiozero"],"since":1715673600000,"encoding":"deflate"}'
    b'{"state":"offline","since":1715673600000}'
    b'{"trip_id":"t-","started":"2024-05-14T08:00:00Z","ended":"2024-05-14T09:00:00Z",'
    b'"trigger":"ignition","distance_km":45.2,"distance_source":"can","fuel_l":12.5,'
    b'"fuel_source":"can","fuel":"diesel","co2e_kg":39.6,"co2e_factor_kg_per_l":3.17,'
    b'"passengers":12,"passenger_km":,"co2e_g_per_passenger_km":}'
    b'{"kind":"panic","active":true,"reason":"panic button pressed","details":{"alarm_id":'
    b'"raised_at":,"presses":1,"lat":45.9,"lon":2.1,"fix_time":"2024-05-14T08:00:00Z"}}'
    b'{"mode":"on-demand","assigned":true,"route_id":"","trip_id":"","start_date":"2024",'
    b'"start_time":"08:00:00","direction_id":0,"schedule_relationship":"SCHEDULED","line":"",'
    b'"headsign":"","assigned_at":}'
    b'{"active":[{"source":0,"spn":110,"fmi":16,"occurrence":1,"cm":0}],"lamps":[{"source":0,'
    b'"malfunction":0,"red_stop":0,"amber_warning":1,"protect":0}]}'
    b'{"id":"","ok":true,"result":{},"error":{"code":"","message":""}}'
    b'{"event":"lost","after_s":10.0,"last_fix_time":"2024-05-14T08:00:00Z","lat":45.9,"lon":2.1}'
    b'{"geofence":"","name":"","kind":"stop","event":"arrive","dwell_s":,"lat":45.9,"lon":2.1,'
    b'"fix_time":"2024-05-14T08:00:00Z"}'
    b'{"uptime_s":3600.0,"rss_mb":58.0,"cpu_pct":1.0,"loop_lag_ms":1.0,"clock":"ntp",'
    b'"connected":true,"reconnects":0,"outbox":{"depth":0,"bytes":0,"oldest_age_s":null,'
    b'"in_flight":0,"by_class":{"alarm":0,"event":0,"state":0,"trip":0,"sample":0,"health":0},'
    b'"thin_level":0,"refused":0,"thinned":0,"dropped":0,"write_errors":0,"in_memory":0,'
    b'"read_errors":0},"drivers":[{"name":"gps","driver":"gps.sim","state":"running",'
    b'"restarts":0},{"name":"can","driver":"can.replay","state":"running","restarts":0}],'
    b'"errors":{"driver.gps.fixes":},"mqtt":{"protocol":"5","fallback":false,'
    b'"session_expiry_s":86400,"session_present":true}}'
    b'{"count":0,"capacity":30,"percent":0,"status":"MANY_SEATS_AVAILABLE","entries":0,'
    b'"exits":0,"reset_at":1715673600000}'
    b'{"card_ref":"","reader":"front-reader","decision":"granted","reason":"ok","action":"board",'
    b'"profile":"resident","fare_cents":150,"lists_version":1,"unlocked":true,"validity":"clock"}'
    b'{"door":"front","open":true,"source":"can"}{"door":"rear","open":false,"source":"sensor"}'
    b'"full":false,"uptime_s":3600.0,"depth":0,"in_flight":0,"rss_mb":58.0,"cpu_pct":1.0,'
    b'"loop_lag_ms":1.0}'
    b'{"speed_kmh":50.0,"total_distance_km":123456.789,"fuel_level_pct":75.2,"fuel_used_l":'
    b'12345.5,"engine_rpm":1200.0,"engine_hours":1234.56,"ignition":true,"doors":{"front":'
    b'"closed","rear":"closed"},"extra":{},"trip_id":"t-'
    b'{"v":1,"epoch":"","seq":1,"ts":1715673600000,"clock":"gps","clock":"unsynced",'
    b'"clock":"ntp","fix_time":"2024-05-14T08:00:00Z","lat":45.9,"lon":2.1,"alt":430.0,'
    b'"speed":16.67,"course":180.0,"mode":"3D","quality":1,"satellites":10,"hdop":1.0,'
    b'"odometer_m":1234.5}'
    b'{"v":1,"epoch":"","seq":1100,"ts":1715673918000,"clock":"ntp","fix_time":'
    b'"2024-05-14T08:05:18Z","lat":45.91252369,"lon":2.17853746,"alt":431.6,"speed":16.4,'
    b'"course":351.8,"mode":"3D","quality":1,"satellites":12,"hdop":1.43,"odometer_m":3336.5}'
)

DICTIONARIES: dict[int, bytes] = {1: _EXAMPLES_1}
"""Every dictionary id a reader knows. The writer uses `CURRENT`."""
CURRENT = 1
