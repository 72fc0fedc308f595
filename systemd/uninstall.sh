#!/usr/bin/env bash
# Remove the edged service. Keeps the config (/etc/edged), the outbox (/var/lib/edged) and
# the edged user unless --purge: what a node has not sent yet is still in the outbox.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo systemd/uninstall.sh [OPTIONS]

Stops and disables edged.service, then removes the unit, the udev rules, the NFC module
blacklist, the sysctl file, the kiosk screen's Chromium policy and /opt/edged (the venv).

Kept unless --purge: /etc/edged (config, secrets), /var/lib/edged (the outbox: messages
not sent yet) and the edged user that owns them. The groups gpio, i2c and spi are always
kept (other software may use them). Debian packages are never removed.

Options:
  --purge          also delete /etc/edged, /var/lib/edged and the edged user
  --root DIR       remove from DIR instead of /, for tests and staging trees
                   (implies --no-systemctl)
  --no-systemctl   touch no running service: no systemctl or udevadm
  -h, --help       this help
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'uninstall.sh: %s\n' "$*" >&2; exit 1; }

ROOT=/
PURGE=0
LIVE=1

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --no-systemctl) LIVE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
if [ "$ROOT" != / ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    LIVE=0
fi
R=${ROOT%/}

if [ "$LIVE" -eq 1 ] && systemctl cat edged.service >/dev/null 2>&1; then
    say "stopping and disabling edged"
    systemctl disable --now --quiet edged.service || true
fi

say "removing the unit, rules, blacklist, sysctl file, kiosk browser policy and /opt/edged"
rm -f "$R/etc/systemd/system/edged.service" \
    "$R/etc/chromium/policies/managed/edged-kiosk.json" \
    "$R/etc/udev/rules.d/99-edged.rules" \
    "$R/etc/modprobe.d/edged-blacklist-nfc.conf" \
    "$R/etc/sysctl.d/60-edged.conf" \
    "$R/etc/apt/apt.conf.d/60edged-bytecode"
rm -rf "$R/opt/edged"
# the policy's directories, when install.sh made them for it alone (Chromium's own stay)
for d in "$R/etc/chromium/policies/managed" "$R/etc/chromium/policies" "$R/etc/chromium"; do
    rmdir "$d" 2>/dev/null || true
done
# drop-ins made with `systemctl edit edged` go with the unit
rm -rf "$R/etc/systemd/system/edged.service.d"

if [ "$LIVE" -eq 1 ]; then
    systemctl daemon-reload
    systemctl reset-failed edged.service 2>/dev/null || true
    udevadm control --reload 2>/dev/null || say "udev is not running: its rules go at the next boot"
fi

if [ "$PURGE" -eq 1 ]; then
    say "purging /etc/edged, /var/lib/edged and the edged user"
    rm -rf "$R/etc/edged" "$R/var/lib/edged"
    prefix=()
    [ -z "$R" ] || prefix=(--prefix "$R")
    if grep -q '^edged:' "$R/etc/passwd" 2>/dev/null; then
        userdel "${prefix[@]}" edged
    fi
    if grep -q '^edged:' "$R/etc/group" 2>/dev/null; then
        groupdel "${prefix[@]}" edged
    fi
else
    say "kept: /etc/edged (config, secrets), /var/lib/edged (the outbox) and the edged user;"
    say "  run with --purge to delete them too"
fi
say "edged is uninstalled"
