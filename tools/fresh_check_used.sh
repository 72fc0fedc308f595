#!/usr/bin/env bash
# The machine after a while in use, for `./dev fresh-check --used` (tools/fresh_check.py):
# in its root, after the first `./dev test` and the documented install (install.sh
# --no-systemctl: the edged user, its groups, /etc/edged, /var/lib/edged, /opt/edged), the
# tests run again, without network (loopback only), beside
#   - a demo running (its kiosk on 127.0.0.1:8080, its broker), a Mosquitto on 1883 and a
#     gpsd on 2947 as their Debian services would be,
#   - another timezone and locale, and the variables a shell or a service may carry.
# Usage: fresh_check_used.sh CHECKOUT -- TEST-ARGS...
set -euo pipefail

SRC=${1:?usage: fresh_check_used.sh CHECKOUT -- TEST-ARGS...}
shift
[ "${1:-}" = -- ] && shift
cd "$SRC"

say() { printf '==> used machine: %s\n' "$*"; }

say "a Mosquitto on 1883 and a gpsd on 2947, as their services would run"
mosquitto -d -p 1883
gpsd -n -S 2947 -F /run/gpsd.sock

say "./dev demo beside the tests (kiosk on 127.0.0.1:8080)"
./dev demo --duration 3600 >/tmp/demo-beside.log 2>&1 &
demo=$!
for _ in $(seq 100); do
    ss -ltn 'sport = :8080' | grep -q LISTEN && break
    sleep 0.2
done
ss -ltn 'sport = :8080' | grep -q LISTEN || { say "the demo did not take 8080"; exit 1; }

say "TZ, locale and variables a shell or a service carries"
export TZ=Pacific/Kiritimati LANG=fr_FR.UTF-8 LC_TIME=de_DE.UTF-8
export EDGECTL_BROKER=mqtt://127.0.0.1:1 JOURNAL_STREAM=8:4242 INVOCATION_ID=0123456789abcdef
code=0
./dev test "$@" || code=$?
kill "$demo" 2>/dev/null || true
exit "$code"
