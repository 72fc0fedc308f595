"""`edgectl release build | show`: make a signed release bundle, or say what is in one.

    edgectl release build --key ops.key --kid ops --target aarch64 --out edged-0.2.0-aarch64.bundle
    edgectl release build --target armv7l --check          # what the index lacks, nothing built
    edgectl release show edged-0.2.0-aarch64.bundle         # version, target, size, sha256

`show` prints the `update.apply` arguments for a URL (`--url`): the size and SHA-256 of the
file, which the signed command carries and the node checks before it opens the bundle.
"""

import argparse
import json
import sys
from pathlib import Path

from core.errors import EdgedError
from edged.errors import CommandError
from edged.release.build import BuildError, build, check_target
from edged.release.bundle import read_head
from edged.release.launcher import sha256_file as sha256_of
from edged.release.manifest import parse_manifest
from edged.release.platforms import TARGETS, this_machine
from edged.security.signing import load_private_key

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    release = sub.add_parser("release", help="release bundles for `edgectl update`")
    rsub = release.add_subparsers(dest="release_command", required=True)
    b = rsub.add_parser(
        "build",
        help="edged and every dependency as wheels for a target, in one signed file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--target",
        default="native",
        choices=["native", *TARGETS],
        help="aarch64 or armv7l: Raspberry Pi OS bookworm, CPython 3.11; native: this "
        "machine (default)",
    )
    b.add_argument("--out", type=Path, metavar="FILE", help="default: edged-VERSION-TARGET.bundle")
    b.add_argument("--key", type=Path, metavar="FILE", help="Ed25519 key of an update-scope key")
    b.add_argument("--kid", metavar="ID", help="its id in the nodes' [[security.keys]]")
    b.add_argument("--source", type=Path, metavar="DIR", help="edged source tree (default: this)")
    b.add_argument("--wheel", type=Path, metavar="FILE", help="edged's wheel, built ahead")
    b.add_argument(
        "--wheels",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="wheels built ahead for the target, found there first (repeat for more)",
    )
    b.add_argument(
        "--extras", default="nfc", help="edged's extras to include, comma-separated (nfc)"
    )
    b.add_argument(
        "--check",
        action="store_true",
        help="only say which dependencies have no wheel for the target; download nothing",
    )
    s = rsub.add_parser("show", help="what a bundle holds, and the update.apply arguments")
    s.add_argument("bundle", type=Path, metavar="FILE")
    s.add_argument("--url", help="where the file servers will serve it (https://…)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.release_command == "show":
            return show(args.bundle, args.url)
        return build_command(args)
    except (BuildError, CommandError, EdgedError) as exc:
        print(f"edgectl release: {exc}", file=sys.stderr)
        return EXIT_FAILED


def build_command(args: argparse.Namespace) -> int:
    target = this_machine() if args.target == "native" else TARGETS[args.target]
    native = args.target == "native"
    extras = [e for e in args.extras.split(",") if e]
    for d in args.wheels:
        if not d.is_dir():
            print(f"edgectl release: --wheels {d}: not a directory", file=sys.stderr)
            return EXIT_USAGE
    if args.check:
        reqs, found = check_target(
            target, source=args.source, wheel=args.wheel, extras=extras,
            find_links=args.wheels, native=native,
        )  # fmt: skip
        print(f"{len(reqs)} dependencies for {target.describe()}:")
        for line in found.report(target):
            print(f"  - {line}")
        if not found.missing:
            print("  every one has a wheel (or builds here as pure Python)")
        return EXIT_FAILED if found.missing else EXIT_OK
    if args.key is None or not args.kid:
        print("edgectl release build: --key FILE and --kid ID are needed to sign", file=sys.stderr)
        return EXIT_USAGE
    key = load_private_key(args.key)
    out = args.out or Path(f"edged-VERSION-{target.name}.bundle")
    result = build(
        target, out, key, args.kid, source=args.source, wheel=args.wheel, extras=extras,
        find_links=args.wheels, native=native, say=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    final = result.bundle
    if args.out is None:
        final = result.bundle.with_name(f"edged-{result.manifest.version}-{target.name}.bundle")
        result.bundle.replace(final)
    print(json.dumps({"bundle": str(final), "version": result.manifest.version,
                      "size": result.size, "sha256": result.sha256}))  # fmt: skip
    return EXIT_OK


def refused_url(url: str) -> str | None:
    """Why the nodes would refuse `url` in `update.apply` (their own rule), or None."""
    from edged.update.download import check_url

    try:
        check_url(url)
    except CommandError as exc:
        return exc.message
    return None


def read_bundle_facts(path: Path) -> tuple[str, int, str]:
    """(version, size, sha256) of a bundle file: what `update.apply` carries."""
    raw, _ = read_head(path)
    return parse_manifest(raw).version, path.stat().st_size, sha256_of(path)


def show(path: Path, url: str | None) -> int:
    if url is not None and (refused := refused_url(url)) is not None:
        print(f"edgectl release show: --url: {refused}", file=sys.stderr)
        return EXIT_USAGE
    raw, sig = read_head(path)
    manifest = parse_manifest(raw)
    try:
        kid = json.loads(sig).get("kid")
    except (ValueError, AttributeError):
        kid = None
    out = {
        "version": manifest.version,
        "target": manifest.target.model_dump(),
        "signed_by": kid,
        "files": len(manifest.files),
        "unpacked_bytes": manifest.unpacked_bytes,
        "notes": manifest.notes,
        "update.apply": {
            "version": manifest.version,
            "url": url or "https://…",
            "size": path.stat().st_size,
            "sha256": sha256_of(path),
        },
    }
    print(json.dumps(out, indent=2))
    return EXIT_OK
