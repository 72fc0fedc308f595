#!/usr/bin/env bash
# The install systemd/README.md documents, under a real systemd: run inside the root that
# `./dev fresh-check` boots (tools/fresh_check.py), by a oneshot unit, without network (the
# packages were fetched beforehand). One line per step, then its details indented:
#
#   == name: ok|FAIL (seconds s) what it found
#
# Exit status: 1 when a step failed. Usage: fresh_check_install.sh CHECKOUT
set -uo pipefail

SRC=${1:?usage: fresh_check_install.sh CHECKOUT}
STATE_TOPIC=rnst/v1/creuse/shuttle-07/state   # the example config's node
EDGED=/opt/edged/venv/bin/edged
CONFIG=/etc/edged/edged.toml
failed=0

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# result NAME STATUS STARTED DETAIL: the step's line (STATUS 0 is ok, "info" says what was
# seen without judging it)
result() {
    if [ "$2" = info ]; then
        echo "== $1: info ($(since "$3") s) $4"
    elif [ "$2" -eq 0 ]; then
        echo "== $1: ok ($(since "$3") s) $4"
    else
        echo "== $1: FAIL ($(since "$3") s) $4"
        failed=$((failed + 1))
    fi
}
detail() { sed 's/^/     /'; }
prop() { systemctl show -p "$1" --value edged.service; }
# wait_for SECONDS COMMAND...: until the command succeeds; 1 if it never did
wait_for() {
    local until=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$until" ] || return 1
        sleep 0.2
    done
}
online() { [ "$(prop ActiveState)" = active ] && prop StatusText | grep -q '^online'; }
new_pid() { local p; p=$(prop MainPID); [ "$p" != 0 ] && [ "$p" != "$1" ]; }
# the node's retained state as JSON text, whatever the fleet's encoding (the example config
# deflates its payloads): decoded by the installed edged, as every edged tool reads them
retained_state() {
    mosquitto_sub -h localhost -t "$STATE_TOPIC" -C 1 -W 5 -N 2>/dev/null |
        /opt/edged/venv/bin/python -c 'import json, sys
from edged.codec import decode
print(json.dumps(decode(sys.stdin.buffer.read())))' 2>/dev/null
}
journal_since() { journalctl -u edged.service --since "@$1" -o cat --no-pager; }

# -- the broker the example config talks to (localhost:1883), from the fetched packages ----
t=$(now)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/tmp/apt.log 2>&1
wait_for 20 systemctl is-active --quiet mosquitto
result broker $? "$t" "mosquitto $(systemctl is-active mosquitto) on localhost:1883"

# -- install.sh, as systemd/README.md shows it (root here, so no sudo) --------------------
t=$(now)
(cd "$SRC" && systemd/install.sh) >/tmp/install.log 2>&1
code=$?
result install $code "$t" "systemd/install.sh exit $code; edged.service $(systemctl is-enabled edged 2>&1)"
detail </tmp/install.log

# -- READY: install.sh started it; Type=notify means active only after READY=1 ------------
t=$(now)
wait_for 60 online
code=$?
state=$(retained_state)
[[ $state == *'"online"'* ]] || code=1
result ready $code "$t" "$(prop ActiveState), STATUS=$(prop StatusText); retained state: ${state:0:60}"

# -- edged doctor as the service's user ----------------------------------------------------
t=$(now)
runuser -u edged -- "$EDGED" doctor -c "$CONFIG" >/tmp/doctor.log 2>&1
code=$?
result doctor $code "$t" "exit $code: $(tail -n 1 /tmp/doctor.log)"
detail </tmp/doctor.log

# -- the sandbox as systemd applies it ------------------------------------------------------
t=$(now)
pid=$(prop MainPID)
seccomp=$(awk '/^Seccomp:/ { print $2 }' "/proc/$pid/status")
nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status")
exposure=$(systemd-analyze security edged.service 2>/dev/null | grep -o 'Overall exposure.*' | grep -Eo '[0-9]+\.[0-9]+ [A-Z]+')
# the unit's whole sandbox around a Python that asks the kernel's clock state (adjtimex)
sed -e 's/^Type=notify/Type=oneshot/' -e '/^NotifyAccess=/d' -e '/^WatchdogSec=/d' \
    -e '/^Restart/d' -e '/^\[Install\]/,$d' \
    -e "s|^ExecStart=.*|ExecStart=/opt/edged/venv/bin/python -c \"import edged.clock as c; r = c.kernel_clock_synced(); print('adjtimex says synced:', r); raise SystemExit(r is None)\"|" \
    /etc/systemd/system/edged.service >/etc/systemd/system/edged-probe.service
systemctl daemon-reload
systemctl start edged-probe.service
probe=$?
clock=$(journalctl -u edged-probe.service -o cat --no-pager | grep 'adjtimex says' | tail -n 1)
code=0
[ "$seccomp" = 2 ] && [ "$nnp" = 1 ] && [ "$probe" = 0 ] || code=1
result sandbox $code "$t" "Seccomp: $seccomp (2 = filter), NoNewPrivs: $nnp, exposure $exposure; $clock"
rm -f /etc/systemd/system/edged-probe.service
systemctl daemon-reload

# -- resource limits: what this container's cgroups let systemd enforce ---------------------
t=$(now)
cg=$(prop ControlGroup)
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    memory=/sys/fs/cgroup$cg/memory.max
    tasks=/sys/fs/cgroup$cg/pids.max
    devices=""
else
    memory=/sys/fs/cgroup/memory$cg/memory.limit_in_bytes
    tasks=/sys/fs/cgroup/pids$cg/pids.max
    devices=/sys/fs/cgroup/devices$cg/devices.list
fi
verified=()
unverified=()
# check NAME FILE WANTED
check() {
    if [ -r "$2" ] && [ "$(cat "$2")" = "$3" ]; then
        verified+=("$1")
    else
        unverified+=("$1 ($2: $(cat "$2" 2>/dev/null || echo missing))")
    fi
}
check MemoryMax "$memory" 157286400
check TasksMax "$tasks" 128
if [ -n "$devices" ] && [ -r "$devices" ] && ! grep -q '^a ' "$devices"; then
    verified+=("DeviceAllow")
else
    unverified+=("DevicePolicy/DeviceAllow (${devices:-a BPF program on cgroup v2}: not readable here)")
fi
result limits info "$t" "enforced: ${verified[*]:-none}; not verified: ${unverified[*]:-none}"

# -- a frozen loop: the watchdog kills it and systemd starts it again ------------------------
t=$(now)
start=$(date +%s)
restarts=$(prop NRestarts)
pid=$(prop MainPID)
kill -STOP "$pid"
wait_for 120 new_pid "$pid" && wait_for 60 online
code=$?
journal_since "$start" | grep -q 'Watchdog timeout' || code=1
result watchdog $code "$t" "frozen pid $pid replaced by $(prop MainPID); restarts $restarts -> $(prop NRestarts); $(journal_since "$start" | grep -m1 -o 'Watchdog timeout.*')"

# -- a config error stops the restart loop until it is fixed ----------------------------------
t=$(now)
start=$(date +%s)
cp "$CONFIG" /tmp/good.toml
echo 'no_such_key = 1' >>"$CONFIG"
systemctl restart edged.service 2>/dev/null
sleep 12  # more than RestartSec=5s twice: a loop would have restarted it by now
code=0
[ "$(prop ActiveState)" = failed ] && [ "$(prop ExecMainStatus)" = 78 ] || code=1
said=$(journal_since "$start" | grep -m1 'edged: not started')
[ -n "$said" ] || code=1
restarts=$(prop NRestarts)
detail_line="$(prop ActiveState), status $(prop ExecMainStatus), restarts $restarts; journal: ${said:0:70}"
cp /tmp/good.toml "$CONFIG"
systemctl restart edged.service && wait_for 60 online || code=1
result config-error $code "$t" "$detail_line; fixed and restarted: $(prop ActiveState)"

# -- kill -9: back, with the outbox kept ---------------------------------------------------
t=$(now)
pid=$(prop MainPID)
kill -9 "$pid"
wait_for 60 new_pid "$pid" && wait_for 60 online
code=$?
[ -s /var/lib/edged/outbox.sqlite ] || code=1
result kill-9 $code "$t" "back as pid $(prop MainPID), outbox $(stat -c %s /var/lib/edged/outbox.sqlite 2>/dev/null) bytes kept"

# -- stop: within TimeoutStopSec, saying offline -----------------------------------------------
t=$(now)
systemctl stop edged.service
code=$?
took=$(since "$t")
state=$(retained_state)
[[ $state == *'"offline"'* ]] || code=1
result stop $code "$t" "stopped in $took s, $(prop ActiveState); retained state: ${state:0:60}"

# -- uninstall: the service goes, config and data stay ------------------------------------------
t=$(now)
(cd "$SRC" && systemd/uninstall.sh) >/tmp/uninstall.log 2>&1
code=$?
[ ! -e /etc/systemd/system/edged.service ] && [ -e "$CONFIG" ] && [ -d /var/lib/edged ] || code=1
result uninstall $code "$t" "exit $code; unit $(systemctl is-enabled edged 2>&1 | tail -n 1); /etc/edged and /var/lib/edged kept"
detail </tmp/uninstall.log

[ "$failed" -eq 0 ]
