#!/usr/bin/env bash
# Usage: sudo tools/arch_check.sh ARCH [OPTIONS]     ARCH: armhf, arm64 (or this machine's own)
#
# edged on a Raspberry Pi's architecture, tried on this machine as a new user would meet it:
# a throw-away Debian 12 (bookworm, what Raspberry Pi OS is built on) root of ARCH made with
# debootstrap, run under QEMU user-mode emulation (qemu-user-static + binfmt_misc) with
# systemd-nspawn, the current commit copied in (git archive HEAD), then inside it:
#
#   install   ./dev demo --help          what `./dev demo` installs first (apt, venv, pip)
#   demo      ./dev demo --duration 20   passes when the node came online
#   tests     ./dev test TESTS           apt, pip test extras, ruff, mypy, then pytest on
#                                        TESTS (default: the NFC, GPS and CAN driver tests;
#                                        emulated: with no Hypothesis deadline per example)
#
# and the root is deleted. Each step's time and result are printed at the end, with what
# ./dev said about building from source. The root reaches the package sources this machine
# uses and nothing else: apt's Debian mirror (from /etc/apt), and pip's configuration as
# `pip config` reports it (its files, the local folders they name, the CA bundle pip uses,
# all bound read-only, and this environment's PIP_* variables).
#
# Options:
#   --tests "PATHS"   pytest arguments for the tests step (default: the driver tests above)
#   --demo-s N        demo duration in seconds (default 20)
#   --root DIR        the root's folder (default: a new one under /var/tmp); a folder that
#                     already holds a bootstrapped ARCH root is reused (no debootstrap)
#   --keep            keep the root afterwards (to look inside: systemd-nspawn -D DIR)
#   --mirror URL      the Debian mirror (default: the one apt uses here)
#   --quiet           print only the steps and the summary (the logs keep everything)
#   --dry-run         print the mirror and what the root would see of this machine; no change
#
# Exit status: 0 everything passed, 1 the demo or the tests failed, 2 usage or a step that
# could not run, 3 this machine cannot run ARCH binaries (it says exactly what failed).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
TESTS="tests/drivers/nfc tests/drivers/gps tests/drivers/can"
DEMO_S=20
TESTS_BUDGET_S=5400  # install, ruff, mypy and the tests, all emulated: about 25 min for armhf
ROOT=""
KEEP=0
MIRROR=""
QUIET=0
DRY=0
APT_ETC=${APT_ETC:-/etc/apt}  # where the mirror is looked up (tests point it elsewhere)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'arch_check: %s\n' "$*" >&2; exit "${2:-2}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

ARCH=${1:-}
case "$ARCH" in
    -h|--help) usage; exit 0 ;;
    armhf|arm64|amd64|i386) shift ;;
    "") usage >&2; die "which architecture? armhf (32-bit Raspberry Pi OS) or arm64" ;;
    *) usage >&2; die "unknown architecture: $ARCH (armhf or arm64)" ;;
esac
while [ $# -gt 0 ]; do
    case "$1" in
        --tests) TESTS=${2:?--tests needs pytest arguments}; shift 2 ;;
        --demo-s) DEMO_S=${2:?--demo-s needs seconds}; shift 2 ;;
        --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
        --quiet) QUIET=1; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[ "$DRY" -eq 1 ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo): debootstrap and \
systemd-nspawn need it"

HOST_ARCH=$(dpkg --print-architecture)
STAMP=$(date +%Y%m%d-%H%M%S)
if [ -z "$ROOT" ]; then
    ROOT=/var/tmp/edged-arch-$ARCH-$STAMP
    LOGS=$ROOT.logs
else
    ROOT=$(realpath -m "$ROOT")
    LOGS=$ROOT.logs
fi
mkdir -p "$LOGS"
RESULTS=()
STATUS=0

record() {  # STEP SECONDS RESULT
    RESULTS+=("$(printf '%-9s %7s s  %s' "$1" "$2" "$3")")
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    if [ "$KEEP" -eq 1 ]; then
        say "root kept: $ROOT (logs: $LOGS)"
        return
    fi
    if grep -q " ${ROOT}[/ ]" /proc/mounts; then
        say "not deleting $ROOT: something is still mounted under it"
        return
    fi
    rm -rf "$ROOT"
    say "root deleted (logs kept: $LOGS)"
}

# -- this machine ---------------------------------------------------------------------------

host_tools() {
    local missing=() pkg
    for pkg in debootstrap systemd-container qemu-user-static binfmt-support; do
        [ "$pkg" != qemu-user-static ] || [ "$ARCH" != "$HOST_ARCH" ] || continue
        [ "$pkg" != binfmt-support ] || [ "$ARCH" != "$HOST_ARCH" ] || continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

binfmt() {
    # ARCH binaries must run here, inside a root too: binfmt_misc mounted, QEMU's handler
    # registered and enabled, with the F flag (the interpreter opened at registration,
    # so it need not exist inside the root).
    [ "$ARCH" != "$HOST_ARCH" ] || return 0
    local handler dir=/proc/sys/fs/binfmt_misc out
    case "$ARCH" in
        armhf) handler=qemu-arm ;;
        arm64) handler=qemu-aarch64 ;;
        i386) return 0 ;;  # an amd64 kernel runs i386 itself
        *) die "no QEMU handler known for $ARCH on $HOST_ARCH" ;;
    esac
    if [ ! -e "$dir/register" ]; then
        out=$(mount -t binfmt_misc binfmt_misc "$dir" 2>&1) || die "cannot run $ARCH binaries \
here: mounting binfmt_misc on $dir failed: $out (user-mode emulation needs it: a container \
without CAP_SYS_ADMIN cannot mount it, and a kernel without CONFIG_BINFMT_MISC has none)" 3
    fi
    if [ ! -e "$dir/$handler" ]; then
        out=$(update-binfmts --enable "$handler" 2>&1) || die "cannot run $ARCH binaries here: \
registering $handler failed (update-binfmts --enable $handler: $out)" 3
    fi
    [ -e "$dir/$handler" ] || die "cannot run $ARCH binaries here: $dir/$handler did not \
appear after update-binfmts --enable $handler (is $dir writable?)" 3
    grep -qx enabled "$dir/$handler" || die "cannot run $ARCH binaries here: $dir/$handler \
is disabled (echo 1 > $dir/$handler, or update-binfmts --enable $handler)" 3
    grep -q '^flags:.*F' "$dir/$handler" || die "cannot run $ARCH binaries here: $handler is \
registered without the F flag, so the interpreter is not found inside a root (reinstall \
qemu-user-static, whose binfmt entries have it)" 3
    [ "$(cat "$dir/status")" = enabled ] || die "cannot run $ARCH binaries here: binfmt_misc \
is disabled ($dir/status): echo 1 > $dir/status" 3
}

debian_mirror() {
    # The first Debian mirror apt uses here for $SUITE (one-line .list or deb822 .sources).
    local f
    for f in "$APT_ETC/sources.list" "$APT_ETC"/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) break;
            if ($(i + 1) == s && $i ~ /debian\/?$/) { print $i; exit } }' "$f"
    done
    for f in "$APT_ETC"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" } /(^|\n)Types:[^\n]*deb([ \t\n]|$)/ {
            uri = ""; ok = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
                if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) ok = 1 }
            }
            if (ok && uri ~ /debian\/?$/) { print uri; exit } }' "$f"
    done
}

# -- what the root sees of this machine ------------------------------------------------------

NSPAWN=()

ROOT_CA=/etc/arch-check/pip-ca.pem
# Where the CA bundle pip uses here is seen inside the root, with PIP_CERT pointing at it: not
# at its own path, where the root's ca-certificates package must be able to write its own.

nspawn_args() {
    # pip's configuration and what it names, read-only; PIP_* from this environment
    local python listing token seen=" " path cert=${PIP_CERT:-}
    NSPAWN=(-q -D "$ROOT" --register=no --keep-unit --pipe --resolv-conf=copy-host
        --bind-ro=/etc/hosts --setenv=HOME=/root --setenv=LANG=C.UTF-8 --chdir=/root/edged)
    python=$(command -v python3 || true)
    if [ -n "$python" ] && "$python" -m pip --version >/dev/null 2>&1; then
        listing=$("$python" -m pip config debug 2>/dev/null; "$python" -m pip config list 2>/dev/null)
        [ -n "$cert" ] || cert=$(printf '%s\n' "$listing" \
            | sed -n "s/^[^#]*\.cert[=:] *'\{0,1\}\(\/[^' ]*\).*/\1/p" | head -n 1)
        for token in $(printf '%s\n' "$listing" | sed -e 's/, exists: True$//' -e 's/^[^=]*=//' \
            -e "s/'//g" -e 's|file://||g' | tr ' ' '\n' | grep '^/' || true); do
            path=${token%/}
            # a local index (file:///x/simple) links its files relative to it: bind its parent
            [ "${path##*/}" != simple ] || path=${path%/simple}
            case "$path" in /|/usr|/usr/*|/proc*|/sys*|/dev*|"$cert") continue ;; esac
            [ -e "$path" ] || continue
            [[ "$seen" == *" $path "* ]] && continue
            seen+="$path "
            NSPAWN+=(--bind-ro="$path")
        done
    fi
    while IFS='=' read -r name _; do
        [ "$name" = PIP_CERT ] || NSPAWN+=(--setenv="$name=${!name}")
    done < <(env | grep -E '^PIP_[A-Z_]+=' || true)
    if [ -n "$cert" ] && [ -f "$cert" ]; then
        NSPAWN+=(--bind-ro="$cert:$ROOT_CA" --setenv="PIP_CERT=$ROOT_CA")
    fi
}

inside() {  # LOG COMMAND: run COMMAND with bash in the root's /root/edged, output to LOG
    # PRIVATE_NET=1: a network of its own (loopback only), so ports taken here (a demo's
    # kiosk on 8080) do not matter and nothing inside is reachable from outside
    local log=$1 net=()
    shift
    [ "${PRIVATE_NET:-0}" -eq 0 ] || net=(--private-network)
    if [ "$QUIET" -eq 1 ]; then
        systemd-nspawn "${NSPAWN[@]}" "${net[@]}" /bin/bash -c "$1" >"$log" 2>&1
    else
        systemd-nspawn "${NSPAWN[@]}" "${net[@]}" /bin/bash -c "$1" 2>&1 | tee "$log"
        return "${PIPESTATUS[0]}"
    fi
}

said() {  # what ./dev said about building from source, from a step's log
    grep -E '==> (no wheel|pip install, building|installing build)' "$1" | sed 's/\x1b\[[0-9;]*m//g' \
        | sed 's/^/           /' || true
}

# -- the steps --------------------------------------------------------------------------------

if [ "$DRY" -eq 1 ]; then
    [ -n "$MIRROR" ] || MIRROR=$(debian_mirror | head -n 1)
    nspawn_args
    printf 'arch %s on %s\nmirror %s\nroot %s\nnspawn' "$ARCH" "$HOST_ARCH" "${MIRROR:-none}" "$ROOT"
    printf ' %q' "${NSPAWN[@]}"
    printf '\n'
    rmdir "$LOGS" 2>/dev/null || true
    exit 0
fi

trap cleanup EXIT
START=$(date +%s)
say "arch check: $ARCH on $HOST_ARCH ($(uname -r)), root $ROOT, logs $LOGS"

t=$(date +%s)
host_tools
binfmt
record host "$(( $(date +%s) - t ))" "debootstrap, systemd-nspawn$([ "$ARCH" = "$HOST_ARCH" ] || echo ", qemu-user-static and binfmt_misc for $ARCH"): ok"

t=$(date +%s)
if [ -x "$ROOT/usr/bin/dpkg" ] && [ "$(systemd-nspawn -q -D "$ROOT" --register=no --keep-unit \
    --pipe dpkg --print-architecture 2>/dev/null)" = "$ARCH" ]; then
    record root 0 "reused $ROOT"
else
    [ -n "$MIRROR" ] || MIRROR=$(debian_mirror | head -n 1)
    [ -n "$MIRROR" ] || die "no Debian mirror for $SUITE in /etc/apt: give one with --mirror URL"
    say "debootstrap --arch=$ARCH $SUITE $ROOT $MIRROR"
    if ! debootstrap --arch="$ARCH" "$SUITE" "$ROOT" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1; then
        tail -n 20 "$LOGS/debootstrap.log" >&2
        die "debootstrap failed: see $LOGS/debootstrap.log"
    fi
    record root "$(( $(date +%s) - t ))" "debootstrap $SUITE $ARCH from $MIRROR: $(du -sh "$ROOT" | cut -f1)"
fi

rm -rf "$ROOT/root/edged"
mkdir -p "$ROOT/root/edged"
git -C "$REPO" archive --format=tar HEAD | tar -x -C "$ROOT/root/edged"
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
nspawn_args
MACHINE=$(systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --pipe uname -m 2>/dev/null || true)
say "commit $COMMIT copied in; inside, uname -m says $MACHINE"

t=$(date +%s)
say "install: ./dev demo --help"
if inside "$LOGS/install.log" "./dev demo --help"; then
    record install "$(( $(date +%s) - t ))" "ok ($MACHINE)"
else
    record install "$(( $(date +%s) - t ))" "FAILED (see $LOGS/install.log)"
    STATUS=1
fi
RESULTS+=("$(said "$LOGS/install.log")")

if [ "$STATUS" -eq 0 ]; then
    t=$(date +%s)
    say "demo: ./dev demo --duration $DEMO_S"
    if PRIVATE_NET=1 inside "$LOGS/demo.log" "./dev demo --duration $DEMO_S" \
        && grep -Eq '^node +[^ ]+ online' "$LOGS/demo.log"; then
        record demo "$(( $(date +%s) - t ))" "ok: $(grep -E '^(node|position) ' "$LOGS/demo.log" \
            | sed 's/  */ /g' | paste -sd ';' -)"
    else
        record demo "$(( $(date +%s) - t ))" "FAILED (see $LOGS/demo.log)"
        STATUS=1
    fi
fi

t=$(date +%s)
# -v names each test in the log; faulthandler_timeout dumps every thread of a test still
# running after 5 min from a watchdog thread (under emulation a hang may block signals, and
# pytest-timeout's alarm with them); TESTS_BUDGET_S kills a step that hangs even so. Under
# emulation Hypothesis' deadline per example measures QEMU: the "emulated" profile drops it.
tests="./dev test $TESTS -p no:cacheprovider -v -o faulthandler_timeout=300"
[ "$ARCH" = "$HOST_ARCH" ] || tests+=" --hypothesis-profile=emulated"
say "tests: $tests"
if inside "$LOGS/tests.log" "timeout --signal=KILL $TESTS_BUDGET_S $tests"; then
    result=ok
else
    result=FAILED
    STATUS=1
fi
summary=$(grep -E '^=+ .*(passed|failed|error).* =+$' "$LOGS/tests.log" | tail -n 1 | tr -d '=' \
    | sed 's/^ *//; s/ *$//' || true)
record tests "$(( $(date +%s) - t ))" "$result: ${summary:-no pytest summary (see $LOGS/tests.log)}"
RESULTS+=("$(said "$LOGS/tests.log")")
grep -E '^FAILED ' "$LOGS/tests.log" | sed 's/^/          /' >"$LOGS/failed.txt" || true
[ ! -s "$LOGS/failed.txt" ] || RESULTS+=("$(head -n 40 "$LOGS/failed.txt")")

echo
echo "arch check $ARCH (commit $COMMIT, on $HOST_ARCH), $(( $(date +%s) - START )) s in all:"
for line in "${RESULTS[@]}"; do
    [ -z "$line" ] || printf '%s\n' "$line" | sed 's/^/  /'
done
exit "$STATUS"
