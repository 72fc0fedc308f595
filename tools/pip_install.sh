# shellcheck shell=bash
# Sourced by ./dev and systemd/install.sh. `pip_install PYTHON APT_FN PIP_ARGS...` installs
# with PYTHON's pip, from wheels when this machine has one for every dependency. Only when
# a dependency has source distributions but no wheel for this machine (32-bit ARM: cffi,
# psutil, PyYAML, argon2-cffi-bindings... on PyPI) it calls APT_FN with the Debian packages
# a source build needs, says so, and builds with pip's progress shown: a build takes minutes
# on a Pi, and `pip -q` would print nothing all along. Any other failure (a package that
# does not exist, no network) is pip's own error, and nothing is installed for the build.
# The caller defines `say MESSAGE`.

# What compiling the dependencies without wheels needs: C compilers and Python's headers
# (cffi, psutil, PyYAML), libffi's headers (cffi), cmake, and libatomic for the cmake that
# pip may fetch as a build requirement (argon2-cffi-bindings' build pulls one in).
SOURCE_BUILD_DEBS=(build-essential python3-dev libffi-dev cmake libatomic1)

# Pure-Python dependencies published as source only, built everywhere without a compiler.
PURE_SOURCE_ONLY=pynfc

pip_install() {
    local python=$1 apt_fn=$2 log missing name
    shift 2
    log=$(mktemp -t edged-pip.XXXXXX)
    # -vv: pip then names the source distributions it skipped for want of a wheel
    if "$python" -m pip install -vv --only-binary=:all: --no-binary="$PURE_SOURCE_ONLY" "$@" \
        >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    missing=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' "$log" | head -n 1)
    name=$(printf '%s' "${missing%%[<>=!~;[ ]*}" | tr '[:upper:]' '[:lower:]' | tr '_.' '--')
    if [ -z "$name" ] || ! grep -qi "Skipping link: No sources permitted for $name:" "$log"; then
        grep -E '^(ERROR|WARNING):' "$log" >&2 || tail -n 20 "$log" >&2
        say "pip install failed (its whole log: $log)"
        return 1
    fi
    rm -f "$log"
    say "no wheel for this machine ($(uname -m), $("$python" -c \
        'import sys; print(f"Python {sys.version_info[0]}.{sys.version_info[1]}")')) for" \
        "$missing, and maybe others: building from source, with ${SOURCE_BUILD_DEBS[*]}" \
        "(minutes on a Pi; Raspberry Pi OS's piwheels.org index has wheels, see the README)"
    "$apt_fn" "${SOURCE_BUILD_DEBS[@]}"
    say "pip install, building what has no wheel (each build shows as it starts and ends)"
    "$python" -m pip install --progress-bar off "$@"
}
