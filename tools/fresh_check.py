"""`./dev fresh-check`: the README's promises, on a Debian 12 that never ran this project.

A throw-away Debian 12 root is made with debootstrap from the mirror apt uses on this
machine, a clean clone of the current commit is copied in, and inside it (systemd-nspawn):

  demo     ./dev demo --duration 20        (as a new user types it: installs, then runs)
  test     ./dev test -p no:cacheprovider  (installs the rest, ruff, mypy, pytest)
  used     (--used) the tests again there, the documented install done, a demo, a broker
           and a gpsd running beside them, in another timezone and locale
  install  systemd booted in a second, pristine copy of the root: systemd/install.sh as
           systemd/README.md shows it, then start, READY, `edged doctor` as edged, a
           watchdog freeze, a config error, kill -9, stop, uninstall
           (tools/fresh_check_install.sh, run there by a oneshot unit)

then the roots are deleted. Each step's time is printed with what it found; the exit status
is the tests' (or 1 when they passed and the demo or the install did not).

The roots reach the same package sources as this machine, and nothing else: apt's mirror and
its Acquire:: settings, this machine's /etc/hosts (read-only), and pip's configuration as
`pip config` reports it (its files, the local directories they name and the CA bundle pip
uses, all read-only, with this environment's PIP_* variables). The booted root has no
network: its packages are fetched beforehand (apt --download-only, a pip wheelhouse), so its
broker on localhost:1883 and kiosk on 8080 meet nothing of this machine.

Architectures: only this machine's for now. `--arch` is the hook for arm64 and armhf (a
Raspberry Pi's): see `Target` below, the one place that knows how a root is made and run.
"""

import argparse
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_CHECK = Path(__file__).with_name("fresh_check_install.sh")
USED = Path(__file__).with_name("fresh_check_used.sh")
IN_ROOT = Path("/fresh-check")
"""Where the check's own files are bound inside a root (never part of what is checked)."""
CLONE = Path("/root/edged")
SUITE = "bookworm"
DEMO_S = 20
NSPAWN_SYSCALLS = "adjtimex clock_adjtime clock_adjtime64"
"""nspawn's own filter refuses these; a real machine does not (edged reads the clock with
them). Without CAP_SYS_TIME, which nspawn drops, they can only read."""
NOT_VERIFIED_HERE = (
    "DevicePolicy=/DeviceAllow=, MemoryMax=/MemoryHigh=, TasksMax=: not enforced when the "
    "container shares this machine's hybrid (v1) cgroups (the install step says which it "
    "could check); adjtimex: allowed here only because fresh-check passes "
    f"--system-call-filter='{NSPAWN_SYSCALLS}' to nspawn"
)


TERMINAL_NOISE = re.compile(
    r"^WARNING: Location 'file://.*' is ignored|^Attempted to remove disk file system under"
)
"""Lines kept in the log but not shown: pip's, for each project a local index of this
machine's pip configuration lacks; nspawn's, about its own propagation directory."""


class CheckError(Exception):
    """fresh-check cannot go on; the message says what to do."""


def install_sh_packages(script: Path = REPO / "systemd/install.sh") -> list[str]:
    """The `packages=(...)` systemd/install.sh installs with apt, read from it: a copy of
    the list here missed `tzdata` when install.sh gained it, and the offline root's apt
    then failed to fetch it (the check failed on the install, not on a node)."""
    found = re.search(r"^packages=\(([^)]*)\)", script.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise CheckError(f"{script} has no packages=(...) line: update tools/fresh_check.py")
    return found.group(1).split()


INSTALL_PACKAGES = [*install_sh_packages(), "mosquitto", "mosquitto-clients"]
"""What systemd/install.sh installs with apt, plus the broker the example config talks to:
fetched (not installed) beforehand, so the offline booted root installs them itself."""


# -- what this machine uses to reach its package sources ----------------------------------


@dataclasses.dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """The `deb` entries of sources.list, sources.list.d/*.list and *.sources (deb822)."""
    out: list[AptSource] = []
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.name == "sources.list" or file.suffix == ".list":
            out += _one_line_sources(text)
        elif file.suffix == ".sources":
            out += _deb822_sources(text)
    return out


def _one_line_sources(text: str) -> Iterator[AptSource]:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^]]*\]", " ", line)  # [signed-by=... arch=...]
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            yield AptSource(words[1].rstrip("/"), (words[2],), tuple(words[3:]))


def _deb822_sources(text: str) -> Iterator[AptSource]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            yield AptSource(uri.rstrip("/"), suites, components)


def debian_mirror(sources: Sequence[AptSource], suite: str = SUITE) -> str:
    """The mirror apt installs `suite` from here: debootstrap takes the same."""
    for s in sources:
        if suite in s.suites and "main" in s.components:
            return s.uri
    raise CheckError(
        f"apt here has no `deb` source for {suite} main (/etc/apt/sources.list*): pass --mirror URL"
    )


def root_sources(sources: Sequence[AptSource], suite: str = SUITE) -> str:
    """A sources.list for the root: this machine's entries for the suite and its updates
    and security suites, as a fresh install would have them."""
    lines = []
    for s in sources:
        suites = [x for x in s.suites if x == suite or x.startswith(f"{suite}-")]
        if suites and "main" in s.components:
            lines.append(f"deb {s.uri} {' '.join(suites)} {' '.join(s.components)}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def apt_acquire_settings(conf_d: Path = Path("/etc/apt/apt.conf.d")) -> dict[str, str]:
    """The apt.conf.d files that say how apt reaches its source (Acquire::...): a mirror
    that is a snapshot needs Check-Valid-Until "false", a proxy needs its address."""
    out = {}
    for file in sorted(conf_d.glob("*")) if conf_d.is_dir() else []:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        settings = [
            line
            for line in text.splitlines()
            if line.strip().startswith("Acquire::") and "IndexTargets" not in line
        ]
        if settings:
            out[file.name] = "\n".join(settings) + "\n"
    return out


@dataclasses.dataclass
class PipAccess:
    """How pip reaches its index here, to be bound read-only into a root."""

    files: list[Path] = dataclasses.field(default_factory=list)
    """pip's configuration files, bound at the same path."""
    paths: list[Path] = dataclasses.field(default_factory=list)
    """Local directories and files they name (find-links, file:// indexes, constraints)."""
    ca_bundle: Path | None = None
    """The CA bundle pip uses here; the root's own lacks the CAs this machine added."""
    env: dict[str, str] = dataclasses.field(default_factory=dict)


PATH_KEYS = {"cert", "find-links", "index-url", "extra-index-url", "constraint", "requirement"}


def parse_pip_config(debug: str, listing: str, environ: dict[str, str]) -> PipAccess:
    """From `pip config debug` (the files) and `pip config list` (the values in force)."""
    access = PipAccess()
    for m in re.finditer(r"^\s+(/\S+), exists: True$", debug, re.MULTILINE):
        access.files.append(Path(m[1]))
    for m in re.finditer(r"^[^.\s]*\.([\w-]+)='(.*)'$", listing, re.MULTILINE):
        key, value = m[1], m[2]
        if key not in PATH_KEYS:
            continue
        for item in value.split():
            local = item.removeprefix("file://")
            if not local.startswith("/"):
                continue
            path = Path(local)
            if key == "cert":
                access.ca_bundle = path
                continue
            if path.name == "simple" and key.endswith("index-url"):
                path = path.parent  # a PEP 503 index links to files beside simple/
            access.paths.append(path)
    access.files = list(dict.fromkeys(access.files))
    access.paths = list(dict.fromkeys(p for p in access.paths if p.exists()))
    access.env = {k: v for k, v in environ.items() if k.startswith("PIP_")}
    if access.ca_bundle is not None:
        access.env["PIP_CERT"] = str(IN_ROOT / "pip-ca.crt")
    return access


def pip_access(python: str = sys.executable) -> PipAccess:
    def pip(*args: str) -> str:
        r = subprocess.run(
            [python, "-m", "pip", "config", *args], capture_output=True, text=True, check=False
        )
        return r.stdout if r.returncode == 0 else ""

    return parse_pip_config(pip("debug"), pip("list"), dict(os.environ))


# -- the target: how a root is made and run --------------------------------------------


@dataclasses.dataclass
class Target:
    """A Debian root for this machine's architecture. A Raspberry Pi's (`--arch arm64`,
    `armhf`) is checked under QEMU by tools/arch_check.sh, which `./dev fresh-check --arch`
    runs instead of this file: the demo and the driver tests, not the whole suite nor the
    booted install (both would take hours under emulation)."""

    arch: str
    mirror: str

    def bootstrap(self, root: Path, log: "Log") -> None:
        if self.arch != host_arch():
            raise CheckError(
                f"--arch {self.arch}: this file checks this machine's architecture "
                f"({host_arch()}); `./dev fresh-check --arch {self.arch}` runs "
                "tools/arch_check.sh for another"
            )
        log.run(["debootstrap", f"--arch={self.arch}", SUITE, str(root), self.mirror])

    def nspawn(
        self, root: Path, *, boot: bool = False, network: bool = True, net_admin: bool = False
    ) -> list[str]:
        argv = ["systemd-nspawn", "--quiet", f"--directory={root}", "--register=no"]
        if net_admin:  # the hotspot's tests build their own network namespaces and veths,
            # and set their sysctls (nspawn mounts /proc/sys read-only but for this)
            argv = ["env", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network", *argv]
            argv.append("--capability=CAP_NET_ADMIN")
        argv += ["--keep-unit", f"--system-call-filter={NSPAWN_SYSCALLS}", "--console=pipe"]
        if boot:
            argv.append("--boot")
        else:
            argv += ["--as-pid2", f"--chdir={CLONE}"]
        if network:
            argv.append("--bind-ro=/etc/hosts")  # names this machine gives its sources
        else:
            argv.append("--private-network")
        return argv


TEST_COMMAND = ["./dev", "test", "-p", "no:cacheprovider"]


def host_arch() -> str:
    if shutil.which("dpkg") is None:
        raise CheckError("this is no Debian machine (no dpkg): fresh-check needs apt and dpkg")
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


# -- running and timing -------------------------------------------------------------------


class Log:
    """Each command's output to a log file, and to the terminal unless quiet."""

    def __init__(self, directory: Path, quiet: bool) -> None:
        self.directory = directory
        self.quiet = quiet
        self.file = directory / "fresh-check.log"

    def say(self, text: str) -> None:
        print(f"==> {text}", flush=True)
        with self.file.open("a", encoding="utf-8") as f:
            f.write(f"==> {text}\n")

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 3600,
        into: Path | None = None,
        check: bool = True,
    ) -> int:
        """Run, streaming output; the exit status (CheckError when `check` and non-zero)."""
        with self.file.open("a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(argv)}\n")
            log.flush()
            extra = into.open("w", encoding="utf-8") if into else contextlib.nullcontext()
            with extra as copy:
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                )
                assert proc.stdout is not None
                expired = threading.Event()

                def expire() -> None:
                    expired.set()
                    proc.terminate()  # nspawn then stops the container

                timer = threading.Timer(timeout, expire)
                timer.start()
                try:
                    for line in proc.stdout:
                        log.write(line)
                        if copy is not None:
                            copy.write(line)
                        if not self.quiet and not TERMINAL_NOISE.match(line):
                            sys.stdout.write(line)
                            sys.stdout.flush()
                    code = proc.wait()
                finally:
                    timer.cancel()
        if expired.is_set():
            raise CheckError(f"{shlex.join(argv[:4])}... took more than {timeout:g} s")
        if check and code != 0:
            raise CheckError(f"{shlex.join(argv)} exited {code} (see {self.file})")
        return code


@dataclasses.dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = True
    found: str = ""


class Steps:
    def __init__(self) -> None:
        self.done: list[Step] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        s = Step(name)
        started = time.monotonic()
        try:
            yield s
        except CheckError as exc:
            s.ok, s.found = False, str(exc)
            raise
        finally:
            s.seconds = time.monotonic() - started
            self.done.append(s)

    def table(self) -> str:
        lines = [f"{'step':<9} {'time':>8}  result"]
        for s in self.done:
            mark = "ok" if s.ok else "FAIL"
            lines.append(f"{s.name:<9} {s.seconds:>7.1f}s  {mark:<4}  {s.found}".rstrip())
        total = sum(s.seconds for s in self.done)
        lines.append(f"{'total':<9} {total:>7.1f}s")
        return "\n".join(lines)


def pytest_summary(output: str) -> str:
    """The last `N passed, M failed in Ts` line of pytest, and its FAILED lines; without
    one, the `./dev test` stage it stopped at (ruff, mypy...) and that stage's last line."""
    summary = re.findall(r"^=+ (.*\bin [\d.]+s.*?) =+$", output, re.MULTILINE)
    failed = re.findall(r"^FAILED (\S+)", output, re.MULTILINE)
    text = summary[-1] if summary else "no pytest summary (see the log)"
    stages = re.findall(r"^(?:\x1b\[1m)?==> (\w[\w-]*)", output, re.MULTILINE)
    if not summary and stages:
        tail = output[output.rindex(f"==> {stages[-1]}") :].splitlines()[1:]
        lines = [line.strip() for line in tail if line.strip() and not TERMINAL_NOISE.match(line)]
        text = f"stopped at {stages[-1]}: {lines[-1] if lines else 'no output'}"
    return "\n".join([text, *(f"  FAILED {f}" for f in failed)])


def install_summary(output: str) -> tuple[bool, str]:
    """The `== name: ok|FAIL (T s) detail` lines tools/fresh_check_install.sh writes."""
    lines = re.findall(r"^== (.*)$", output, re.MULTILINE)
    ok = bool(lines) and not any(re.match(r"[^:]+: FAIL", line) for line in lines)
    return ok, "\n".join(f"  {line}" for line in lines) or "  no result (see the log)"


# -- the check ----------------------------------------------------------------------------


def clean_clone(into: Path) -> str:
    """A clone of the commit checked out here (uncommitted changes are not in it)."""
    commit = git("rev-parse", "HEAD")
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(into)], check=True
    )
    got = subprocess.run(
        ["git", "-C", str(into), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if got != commit:
        raise CheckError(f"the clone has {got}, not the checked-out {commit}")
    return commit


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def prepare_root(root: Path, sources: Sequence[AptSource], acquire: dict[str, str]) -> None:
    """apt's sources and Acquire:: settings of this machine (a fresh install has both)."""
    (root / "etc/apt/sources.list").write_text(root_sources(sources), encoding="utf-8")
    for name, text in acquire.items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text, encoding="utf-8")


def pip_binds(access: PipAccess) -> list[str]:
    binds = [f"--bind-ro={p}" for p in [*access.files, *access.paths]]
    if access.ca_bundle is not None:
        binds.append(f"--bind-ro={access.ca_bundle}:{IN_ROOT / 'pip-ca.crt'}")
    binds += [f"--setenv={k}={v}" for k, v in sorted(access.env.items())]
    return binds


def used_machine(target: Target, root: Path, binds: list[str], out: Path, log: Log) -> int:
    """The tests again on the root made a used machine: the documented install done (with
    network, for apt and pip), then tools/fresh_check_used.sh without network: a demo, a
    broker and a gpsd running beside, another timezone and locale."""
    install = [*target.nspawn(root), *binds, "systemd/install.sh", "--no-systemctl"]
    log.run(install, into=out / "used-install.log")
    argv = [*target.nspawn(root, network=False), f"--bind-ro={USED}:{IN_ROOT / 'used.sh'}"]
    argv += ["bash", str(IN_ROOT / "used.sh"), str(CLONE), "--", "-p", "no:cacheprovider"]
    return log.run(argv, into=out / "used.log", check=False)


def fetch_for_install(
    target: Target, roots: tuple[Path, Path], wheels: Path, binds: list[str], log: Log
) -> None:
    """What the offline booted root will install: .debs into its apt cache, and a wheelhouse
    for install.sh's pip, built in the test root (it has Python, like the node will)."""
    tested, pristine = roots
    fetch = "apt-get update -qq && apt-get install -y -qq --download-only " + " ".join(
        INSTALL_PACKAGES
    )
    log.run([*target.nspawn(pristine), "--chdir=/", "sh", "-c", fetch])
    script = (
        "set -e; command -v python3 >/dev/null && python3 -c 'import ensurepip' || "
        "{ apt-get update -qq && apt-get install -y -qq python3-venv; }; "
        "python3 -m venv /tmp/wheelhouse && /tmp/wheelhouse/bin/pip download -q "
        f"-d {IN_ROOT / 'wheels'} '{CLONE}[nfc]' 'setuptools>=77' wheel"
    )
    argv = [*target.nspawn(tested), *binds, f"--bind={wheels}:{IN_ROOT / 'wheels'}"]
    log.run([*argv, "sh", "-c", script])


def boot_and_install(target: Target, root: Path, wheels: Path, out: Path, log: Log) -> str:
    """Boot systemd in the root; a oneshot unit runs tools/fresh_check_install.sh and powers
    off with its status. Its lines are in out/install.log."""
    unit = f"""[Unit]
Description=edged fresh-check: the documented install under a real systemd
After=multi-user.target
# the container's systemd exits with the check's status: nspawn returns
SuccessAction=exit
FailureAction=exit

[Service]
Type=oneshot
ExecStart=/bin/bash {IN_ROOT / "install-check.sh"} {CLONE}
StandardOutput=append:{IN_ROOT / "out/install.log"}
StandardError=inherit
Environment=PIP_NO_INDEX=1 PIP_FIND_LINKS={IN_ROOT / "wheels"} PIP_DISABLE_PIP_VERSION_CHECK=1
TimeoutStartSec=20min

[Install]
WantedBy=multi-user.target
"""
    system = root / "etc/systemd/system"
    (system / "fresh-check.service").write_text(unit, encoding="utf-8")
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "fresh-check.service").symlink_to("../fresh-check.service")
    argv = [*target.nspawn(root, boot=True, network=False)]
    argv += [f"--bind-ro={INSTALL_CHECK}:{IN_ROOT / 'install-check.sh'}"]
    argv += [f"--bind-ro={wheels}:{IN_ROOT / 'wheels'}", f"--bind={out}:{IN_ROOT / 'out'}"]
    log.run(argv, timeout=1800, into=out / "boot.log", check=False)
    path = out / "install.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def mounted_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]


def remove(path: Path) -> None:
    """Delete a root, never through a mount left inside it."""
    left = mounted_under(path)
    if left:
        raise CheckError(f"{path} still has mounts inside ({', '.join(left)}): not deleted")
    shutil.rmtree(path)


def ensure_host_tools(log: Log) -> str:
    missing = [
        pkg
        for tool, pkg in [("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container")]
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        log.say(f"installing {' '.join(missing)} on this machine with apt")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    return ", ".join(missing) + " installed" if missing else "debootstrap, systemd-nspawn here"


def run_check(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CheckError("run as root: debootstrap and systemd-nspawn need it (./dev uses sudo)")
    work = Path(tempfile.mkdtemp(prefix="edged-fresh-check-", dir=args.workdir))
    out = work / "out"
    out.mkdir()
    log = Log(work, args.quiet)
    steps = Steps()
    tested, pristine, wheels = work / "root", work / "root-install", work / "wheels"
    wheels.mkdir()
    test_code = 1
    others_ok = True
    log.say(f"working in {work} (log: {log.file})")
    dirty = git("status", "--porcelain")
    if dirty:
        log.say(f"uncommitted changes are not checked: {len(dirty.splitlines())} path(s)")
    try:
        with steps.step("host") as s:
            s.found = ensure_host_tools(log)
            sources = apt_sources()
            mirror = args.mirror or debian_mirror(sources)
            target = Target(args.arch or host_arch(), mirror)
            access = pip_access()
            binds = pip_binds(access)
            log.say(f"pip in the roots: {shlex.join(binds) or 'no configuration here'}")
        with steps.step("root") as s:
            target.bootstrap(tested, log)
            prepare_root(tested, sources, apt_acquire_settings())
            if not args.skip_install:
                subprocess.run(
                    ["cp", "-a", "--reflink=auto", str(tested), str(pristine)], check=True
                )
            s.found = f"debootstrap {SUITE} ({target.arch}) from {mirror}"
        with steps.step("copy") as s:
            commit = clean_clone(tested / CLONE.relative_to("/"))
            s.found = f"a clone of {commit[:12]} in {CLONE}"
        if not args.skip_tests:
            with steps.step("demo") as s:
                code = log.run(
                    [*target.nspawn(tested), *binds, "./dev", "demo", "--duration", str(DEMO_S)],
                    into=out / "demo.log",
                    check=False,
                )
                text = (out / "demo.log").read_text(encoding="utf-8", errors="replace")
                node = re.search(r"^node\s+\S+ (\S+)", text, re.MULTILINE)
                s.ok = code == 0 and node is not None and node[1] == "online"
                s.found = f"exit {code}, node {node[1] if node else 'never shown'}"
                others_ok &= s.ok
            with steps.step("test") as s:
                test_code = log.run(
                    [*target.nspawn(tested, net_admin=True), *binds, *TEST_COMMAND],
                    into=out / "test.log",
                    check=False,
                )
                text = (out / "test.log").read_text(encoding="utf-8", errors="replace")
                s.ok = test_code == 0
                s.found = f"exit {test_code}: " + pytest_summary(text)
            if args.used:
                with steps.step("used") as s:
                    used_code = used_machine(target, tested, binds, out, log)
                    text = (out / "used.log").read_text(encoding="utf-8", errors="replace")
                    s.ok = used_code == 0
                    s.found = f"exit {used_code}: " + pytest_summary(text)
                    test_code = test_code or used_code
        else:
            test_code = 0
        if not args.skip_install:
            with steps.step("fetch") as s:
                fetch_for_install(target, (tested, pristine), wheels, binds, log)
                s.found = f"{len(list(wheels.iterdir()))} wheels, .debs of {len(INSTALL_PACKAGES)}"
            with steps.step("install") as s:
                clean_clone(pristine / CLONE.relative_to("/"))
                text = boot_and_install(target, pristine, wheels, out, log)
                s.ok, s.found = install_summary(text)
                s.found = "\n" + s.found + f"\n  not verified here: {NOT_VERIFIED_HERE}"
                others_ok &= s.ok
    except CheckError as exc:
        log.say(f"fresh-check: {exc}")
        test_code = test_code or 1
    finally:
        if args.keep:
            log.say(f"kept: {work}")
        else:
            with steps.step("clean") as s:
                for root in (tested, pristine):
                    if root.exists():
                        remove(root)
                s.found = f"roots deleted; logs kept in {out}"
    print("\n" + steps.table(), flush=True)
    return test_code if test_code else (0 if others_ok else 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./dev fresh-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", help="the root's Debian architecture (default: this machine's)")
    p.add_argument("--mirror", help="Debian mirror URL (default: the one apt uses here)")
    p.add_argument("--workdir", default="/var/tmp", help="where the roots go (%(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the roots to look inside")
    p.add_argument("--quiet", action="store_true", help="step lines only; output to the log")
    p.add_argument("--skip-tests", action="store_true", help="no demo, no test: install only")
    p.add_argument("--skip-install", action="store_true", help="demo and test only")
    p.add_argument(
        "--used",
        action="store_true",
        help="then the tests again on the root made a used machine (the install done, a demo,"
        " a broker and a gpsd running, another timezone and locale): 6 to 10 minutes more",
    )
    args = p.parse_args(argv)
    try:
        return run_check(args)
    except CheckError as exc:
        print(f"fresh-check: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
