#!/usr/bin/env bash
# Install edged as a systemd service on Raspberry Pi OS or Debian 12 (bookworm).
#
#   sudo systemd/install.sh                      # from a checkout: apt, user, venv, unit, start
#   sudo systemd/install.sh --wheel edged-0.1.0-py3-none-any.whl
#
# Safe to run again (to update): it never overwrites /etc/edged/edged.toml nor touches
# /var/lib/edged (the outbox); it refreshes the venv, the unit and the rules, and restarts.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo systemd/install.sh [OPTIONS]

Installs edged as the systemd service edged.service:
  - apt: python3-venv, tzdata, libnfc6, libnfc-bin, libfreefare-dev, can-utils (+ python3-lgpio on a Pi;
    + fonts-noto-color-emoji when the config enables [services.kiosk], for the screen's emoji;
    + build-essential python3-dev libffi-dev cmake libatomic1 only where a dependency has no
    wheel for this machine, as on 32-bit Raspberry Pi OS without piwheels)
  - groups gpio, i2c, spi when missing; the system user edged in dialout gpio i2c spi plugdev
  - /opt/edged/releases/VERSION/venv: a virtualenv with edged (this checkout, or --wheel) and
    its NFC extra, made `current`; /opt/edged/launcher.py, which the unit starts; /opt/edged/venv
    a link to the current venv
  - /etc/edged (root:edged 0770) with edged.toml copied from an example only when missing,
    with the files the example names beside it (the simulated route, the CAN log it replays),
    and /etc/edged/secrets (edged, 0700) for passwords and keys
  - /var/lib/edged (edged, 0700): the outbox
  - /opt/edged/doc: the README, systemd/README.md as systemd.md and docs/*.md (the units'
    Documentation= lines point there)
  - with [services.kiosk] enabled: the screen's Chromium policy, allowing the kiosk page's
    address only, in /etc/chromium/policies/managed/edged-kiosk.json (removed without it)
  - the unit, udev rules, NFC module blacklist and sysctl; then daemon-reload, enable, start
    (start only when `edged check-config` passes: otherwise it says what to fix)

Options:
  --wheel FILE     install this wheel instead of the checkout around this script
  --config FILE    example config copied to /etc/edged/edged.toml when that is missing
                   (default: config/shuttle.toml of the checkout)
  --python PATH    the Python that builds the venv (default: /usr/bin/python3)
  --root DIR       install under DIR instead of /, for tests and staging trees: implies
                   --no-apt and --no-systemctl; DIR/etc/passwd and DIR/etc/group must exist
                   (the user is created there); the venv's scripts point into DIR
  --no-apt         do not install Debian packages
  --no-systemctl   touch no running service: no systemctl, udevadm, sysctl or modprobe
  --no-start       enable the service but do not (re)start it
  -h, --help       this help

Environment: pip's own variables apply to the venv install (PIP_INDEX_URL, PIP_NO_INDEX...).
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=/
WHEEL=""
EXAMPLE="$SRC/config/shuttle.toml"
PYTHON=/usr/bin/python3
APT=1
LIVE=1
START=1

while [ $# -gt 0 ]; do
    case "$1" in
        --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
        --config) EXAMPLE=${2:?--config needs a file}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-systemctl) LIVE=0; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo): it creates a system user and writes to /etc"
if [ "$ROOT" != / ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    if [ ! -f "$ROOT/etc/passwd" ] || [ ! -f "$ROOT/etc/group" ]; then
        die "--root $ROOT: needs etc/passwd and etc/group (a system image to install into)"
    fi
    APT=0
    LIVE=0
fi
R=${ROOT%/}  # "" for /, so "$R/etc" is /etc
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--wheel $WHEEL: no such file"
[ -f "$EXAMPLE" ] || die "--config $EXAMPLE: no such file"

USER_NAME=edged
DEVICE_GROUPS=(dialout gpio i2c spi plugdev)
VENV=/opt/edged/venv
# never imported by the daemon, so not compiled for python -OO: pip, the stdlib's tests...
VENV_SKIP='/site-packages/(pip|setuptools|pkg_resources|_distutils_hack)/'
STDLIB_SKIP='/(site-packages|dist-packages|test|idlelib|tkinter|turtledemo|lib2to3)/'

# -- Debian packages ---------------------------------------------------------------------

# kiosk_enabled CONFIG: the config turns on the screen's page ([services.kiosk] enabled);
# status 2 when it cannot be read (reported where it is copied or checked)
kiosk_enabled() {
    "$PYTHON" - "$1" <<'PY'
import sys, tomllib
try:
    with open(sys.argv[1], "rb") as f:
        kiosk = tomllib.load(f).get("services", {}).get("kiosk", {})
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(2)
sys.exit(0 if isinstance(kiosk, dict) and kiosk.get("enabled") is True else 1)
PY
}

# tzdata: local days and times ([node] timezone); a minimal Debian image comes without it
packages=(python3 python3-venv tzdata libnfc6 libnfc-bin libfreefare-dev can-utils)
config_now="$R/etc/edged/edged.toml"                # the one kept, else the example copied
[ -e "$config_now" ] || config_now=$EXAMPLE
kiosk_policy=""  # the screen's Chromium policy, installed with the system files below
kiosk=0
kiosk_enabled "$config_now" || kiosk=$?
if [ "$kiosk" -eq 0 ]; then
    # the screen's browser draws announcements' emoji with it (docs/kiosk.md, Emoji)
    packages+=(fonts-noto-color-emoji)
    # it allows the page's address: a config the policy cannot be made for stops here,
    # before anything is changed
    kiosk_policy=$("$PYTHON" "$SRC/tools/kiosk_policy.py" "$SRC/systemd/chromium/edged-kiosk.json" \
        "$config_now") || die "the screen's browser policy: fix [services.kiosk] in $config_now (above)"
fi
if [ "$APT" -eq 1 ]; then
    # gpiozero's preferred pin driver on a Pi; Raspberry Pi OS has it, plain Debian may not
    if apt-cache show python3-lgpio >/dev/null 2>&1; then
        packages+=(python3-lgpio)
    fi
    say "apt: ${packages[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${packages[@]}"; }
else
    say "apt skipped (--no-apt or --root): the node needs ${packages[*]}"
fi

# -- user and groups (in $ROOT's own passwd and group files) ---------------------------

prefix=()
[ -z "$R" ] || prefix=(--prefix "$R")

has_group() { grep -q "^$1:" "$R/etc/group"; }
has_user() { grep -q "^$1:" "$R/etc/passwd"; }
id_of() { awk -F: -v n="$2" '$1 == n { print $3 }' "$R/etc/$1"; }  # numeric id in $ROOT

for g in "${DEVICE_GROUPS[@]}"; do
    # dialout and plugdev come with Debian; gpio, i2c and spi with Raspberry Pi OS only
    if ! has_group "$g"; then
        say "group $g"
        groupadd "${prefix[@]}" --system "$g"
    fi
done
if ! has_group "$USER_NAME"; then
    groupadd "${prefix[@]}" --system "$USER_NAME"
fi
supplementary=$(IFS=,; echo "${DEVICE_GROUPS[*]}")
if has_user "$USER_NAME"; then
    usermod "${prefix[@]}" --append --groups "$supplementary" "$USER_NAME"
else
    say "user $USER_NAME"
    useradd "${prefix[@]}" --system --gid "$USER_NAME" --groups "$supplementary" \
        --home-dir /var/lib/edged --no-create-home --shell /usr/sbin/nologin \
        --comment "edged gateway daemon" "$USER_NAME"
fi
uid=$(id_of passwd "$USER_NAME")
gid=$(id_of group "$USER_NAME")
if [ -z "$uid" ] || [ -z "$gid" ]; then
    die "user $USER_NAME was not created in $R/etc/passwd"
fi

# -- directories --------------------------------------------------------------------------

# dir PATH MODE UID GID: create or fix; never touches what is inside
dir() {
    install -d -m "$2" "$1"
    chown "$3:$4" "$1"
    chmod "$2" "$1"
}
dir "$R/etc/edged" 0770 0 "$gid"                   # config.set renames files in here
dir "$R/etc/edged/secrets" 0700 "$uid" "$gid"      # passwords, keys: edged only
dir "$R/var/lib/edged" 0700 "$uid" "$gid"          # the outbox
dir "$R/opt/edged" 0755 0 0
dir "$R/opt/edged/doc" 0755 0 0

# named_files EXAMPLE: the files the example config names by a path relative to itself (the
# simulated GPS route, the CAN log it replays...), one per line: the copy needs them beside it.
named_files() {
    "$PYTHON" - "$1" <<'PY'
import sys, tomllib
from pathlib import Path

example = Path(sys.argv[1])
def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            yield from strings(v)
with example.open("rb") as f:
    for s in sorted(set(strings(tomllib.load(f)))):
        rel = Path(s)
        if s and not rel.is_absolute() and ".." not in rel.parts and (example.parent / rel).is_file():
            print(rel)
PY
}

if [ -e "$R/etc/edged/edged.toml" ]; then
    say "keeping /etc/edged/edged.toml"
else
    say "config: /etc/edged/edged.toml from $(basename "$EXAMPLE") (edit it)"
    named=$(named_files "$EXAMPLE") || die "--config $EXAMPLE: not a TOML file Python can read"
    install -m 0640 -o 0 -g "$gid" "$EXAMPLE" "$R/etc/edged/edged.toml"
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        say "  with /etc/edged/$rel"
        sub=$(dirname "$rel")
        [ "$sub" = . ] || install -d -m 0750 -o 0 -g "$gid" "$R/etc/edged/$sub"
        [ -e "$R/etc/edged/$rel" ] || install -m 0640 -o 0 -g "$gid" "$(dirname "$EXAMPLE")/$rel" "$R/etc/edged/$rel"
    done <<< "$named"
fi

# -- the release: /opt/edged/releases/VERSION/venv, `current`, the launcher ------------------
# The layout software updates use (docs/updates.md): systemd starts /opt/edged/launcher.py,
# which runs `current`; /opt/edged/venv stays as a link to its venv for people and scripts.

RELEASES=/opt/edged/releases
if [ -n "$WHEEL" ]; then
    version=$(basename "$WHEEL" | cut -d- -f2)
else
    version=$("$PYTHON" "$SRC/tools/source_version.py" "$SRC")  # edged.__version__
fi
[[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9.+_-]*$ ]] || die "cannot tell the version to install ($version)"
RELEASE=$RELEASES/$version
dir "$R$RELEASES" 0755 "$uid" "$gid"               # edged installs updates here
if [ ! -x "$R$RELEASE/venv/bin/python" ] || ! "$R$RELEASE/venv/bin/python" -c 'import sys' 2>/dev/null; then
    say "venv $RELEASE/venv"
    rm -rf "$R$RELEASE"
    # system site packages: the GPIO pin drivers (lgpio) come from apt on a Pi
    "$PYTHON" -m venv --system-site-packages "$R$RELEASE/venv"
fi
# release.json says "installed to the end" (the launcher starts only such a release): taken
# away while pip changes the venv, written again last. Installing again into the release
# that runs (the same version), a power cut or a failure midway leaves it incomplete, so
# the launcher starts `previous` instead of a venv half replaced. Only when another complete
# release is there to start: with none, a venv perhaps half replaced is better than a node
# that starts nothing (pip failing before it changed anything, say without network, leaves
# the venv whole).
fallback=
for other in "$R$RELEASES"/*; do
    [ ! -L "$other" ] && [ "$(basename "$other")" != "$version" ] \
        && [ -f "$other/release.json" ] && [ -x "$other/venv/bin/python" ] && fallback=$other
done
[ -z "$fallback" ] || rm -f "$R$RELEASE/release.json"
target=${WHEEL:-$SRC}
# shellcheck source=tools/pip_install.sh disable=SC1091  # checked on its own by its tests
. "$SRC/tools/pip_install.sh"
build_debs() {  # called only when a dependency has no wheel for this machine
    [ "$APT" -eq 1 ] || die "building from source needs the Debian packages $*: install them" \
        "(or run without --no-apt/--root), then run this again"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
say "pip install ${target}[nfc]"
pip_install "$R$RELEASE/venv/bin/python" build_debs --disable-pip-version-check --upgrade "${target}[nfc]"
# The unit runs edged with `python -OO` (systemd/README.md, "Optimised bytecode"): it reads
# .opt-2.pyc files, which pip does not write, and cannot write them itself (read-only tree,
# PYTHONDONTWRITEBYTECODE): without them every start compiles every module in memory.
say "bytecode for python -OO: the venv"
"$R$RELEASE/venv/bin/python" -m compileall -q -o 2 -j 0 -x "$VENV_SKIP" "$R$RELEASE/venv/lib" \
    || say "some of the venv did not compile (see above): those modules compile at each start"
stdlib=$("$R$RELEASE/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
if [ -z "$R" ]; then
    # Debian ships the standard library's .pyc only; the launcher and edged import from it
    say "bytecode for python -OO: $stdlib"
    "$R$RELEASE/venv/bin/python" -m compileall -q -o 2 -j 0 -x "$STDLIB_SKIP" "$stdlib" \
        || say "some of $stdlib did not compile (see above)"
else
    say "--root: $stdlib is this machine's, not the image's: not compiled for python -OO"
fi
# dpkg deletes them with an old Python version and compiles only the .pyc of the new one:
# compile the .opt-2.pyc again after every apt run (quick when nothing changed)
install -d -m 0755 "$R/etc/apt/apt.conf.d"
printf '%s\n' "// Installed by edged's install.sh: edged runs with python -OO (systemd/README.md)." \
    "DPkg::Post-Invoke { \"if [ -x $VENV/bin/python ]; then $VENV/bin/python -m compileall -q -o 2 -j 0 -x '$STDLIB_SKIP' $stdlib >/dev/null 2>&1 || true; fi\"; };" \
    > "$R/etc/apt/apt.conf.d/60edged-bytecode"
chmod 0644 "$R/etc/apt/apt.conf.d/60edged-bytecode"
printf '{"version": "%s", "installed_by": "install.sh"}\n' "$version" > "$R$RELEASE/release.json"
chown -R "$uid:$gid" "$R$RELEASE"                 # an update may delete it, once two newer ones run
before=$(readlink "$R$RELEASES/current" 2>/dev/null || true)
if [ "$before" != "$version" ]; then
    if [ -n "$before" ] && [ -f "$R$RELEASES/$before/release.json" ]; then
        ln -sfn "$before" "$R$RELEASES/.previous.tmp" && mv -T "$R$RELEASES/.previous.tmp" "$R$RELEASES/previous"
    fi
    ln -sfn "$version" "$R$RELEASES/.current.tmp" && mv -T "$R$RELEASES/.current.tmp" "$R$RELEASES/current"
fi
rm -f "$R$RELEASES/trial.json"                    # what install.sh puts in place is not on trial
if [ -d "$R$VENV" ] && [ ! -L "$R$VENV" ]; then
    say "$VENV of an earlier install replaced by a link to $RELEASE/venv"
    rm -rf "$R$VENV"
fi
ln -sfn releases/current/venv "$R$VENV"
install -m 0644 "$SRC/edged/release/launcher.py" "$R/opt/edged/launcher.py"

# -- system files -----------------------------------------------------------------------------

install -D -m 0644 "$SRC/systemd/edged.service" "$R/etc/systemd/system/edged.service"
install -D -m 0644 "$SRC/systemd/udev/99-edged.rules" "$R/etc/udev/rules.d/99-edged.rules"
install -D -m 0644 "$SRC/systemd/modprobe.d/edged-blacklist-nfc.conf" \
    "$R/etc/modprobe.d/edged-blacklist-nfc.conf"
install -D -m 0644 "$SRC/systemd/sysctl.d/60-edged.conf" "$R/etc/sysctl.d/60-edged.conf"
install -m 0644 "$SRC/systemd/README.md" "$R/opt/edged/doc/systemd.md"
install -m 0644 "$SRC/README.md" "$R/opt/edged/doc/README.md"
# the units' Documentation= lines name these (wifi.md for the hotspot's), and they link to
# one another: all of docs/, beside the units' own systemd.md
install -m 0644 "$SRC"/docs/*.md "$R/opt/edged/doc/"

# the screen's Chromium: every URL blocked but the kiosk page's, no developer tools, print,
# file dialogs or downloads (docs/kiosk.md, "A visitor at the screen"); only with a kiosk,
# whose address it allows: a node without one keeps its browser unlocked
POLICY=/etc/chromium/policies/managed/edged-kiosk.json
if [ -n "$kiosk_policy" ]; then
    say "kiosk: the screen's browser policy, $POLICY"
    install -d -m 0755 "$R/etc/chromium/policies/managed"
    printf '%s\n' "$kiosk_policy" > "$R$POLICY.tmp"
    chmod 0644 "$R$POLICY.tmp"
    mv -f "$R$POLICY.tmp" "$R$POLICY"
elif [ "$kiosk" -eq 2 ] && [ -e "$R$POLICY" ]; then
    # a typo is not a kiosk dropped: the screen's browser stays locked to the page
    say "kiosk: /etc/edged/edged.toml does not parse: $POLICY left as it is"
elif [ -e "$R$POLICY" ]; then
    say "no kiosk in /etc/edged/edged.toml: $POLICY removed"
    rm -f "$R$POLICY"
fi

if [ "$LIVE" -eq 0 ]; then
    say "installed under $ROOT; no service touched (--no-systemctl or --root)"
    exit 0
fi

# -- the running system ------------------------------------------------------------------------

# best effort: each takes effect at the next boot anyway
say "udev rules, sysctl, NFC modules"
if udevadm control --reload; then
    udevadm trigger --action=change --subsystem-match=tty --subsystem-match=usb \
        --subsystem-match=gpio --subsystem-match=i2c-dev --subsystem-match=spidev || true
else
    say "udev did not reload its rules: /dev/edged-* appear after a replug or a reboot"
fi
sysctl --quiet --load=/etc/sysctl.d/60-edged.conf || say "sysctl: applied at the next boot"
modprobe -r pn533_usb pn533_i2c pn532_uart pn533 nfc 2>/dev/null || true  # loaded before now

systemctl daemon-reload
systemctl enable --quiet edged.service
if [ "$START" -eq 0 ]; then
    say "edged is enabled; start it with: systemctl start edged"
elif ! runuser -u "$USER_NAME" -- "$VENV/bin/edged" check-config /etc/edged/edged.toml; then
    say "edged is enabled but not started: fix /etc/edged/edged.toml (above), then"
    say "  systemctl start edged"
else
    systemctl restart edged.service
    say "edged is running: systemctl status edged; journalctl -u edged -f"
fi
