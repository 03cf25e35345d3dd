"""Build the Elastic Beanstalk source bundle of the review app (Docker platform).

The bundle is the review image's build context: `services/review/Dockerfile` as the root `Dockerfile`,
every path its COPY lines name, `.ebextensions/`, and `Dockerrun.aws.json` (v1: no image, only the host
directory mounted over the users file's directory, so inspector accounts survive `eb deploy`). Elastic
Beanstalk builds the image on the instance, so the bundle runs exactly the app the image runs
(`partcheck serve review`).

    python deploy/eb/bundle.py [--out build/eb/partcheck-review-<version>.zip]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOCKERFILE = ROOT / "services" / "review" / "Dockerfile"
# Local state, caches and build output never go into the bundle.
EXCLUDED_PARTS = {
    "__pycache__",
    "node_modules",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "test-results",
    ".partcheck",
    ".venv",
}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".zip", ".map"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # fixed stamps: the same tree always gives the same bytes


def copy_sources(dockerfile: str) -> list[str]:
    """Build-context paths named by the Dockerfile's COPY lines (not those copying from a stage)."""
    sources: list[str] = []
    lines = dockerfile.replace("\\\n", " ").splitlines()
    for line in lines:
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources += [a.rstrip("/") or "." for a in args[:-1]]
    return sources


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(ROOT)
        if p.is_file() and not (set(rel.parts) & EXCLUDED_PARTS) and p.suffix not in EXCLUDED_SUFFIXES:
            yield p


def bundle_entries() -> dict[str, bytes]:
    """Archive name -> bytes of every file in the bundle."""
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    entries: dict[str, bytes] = {"Dockerfile": dockerfile.encode("utf-8")}
    for source in copy_sources(dockerfile):
        path = (ROOT / source).resolve()
        if not path.is_relative_to(ROOT):
            raise SystemExit(f"error: Dockerfile copies {source!r}, outside the repository")
        if not path.exists():
            raise SystemExit(f"error: Dockerfile copies {source!r}, which does not exist in {ROOT}")
        for f in _files(path):
            entries[f.relative_to(ROOT).as_posix()] = f.read_bytes()
    for f in sorted((HERE / ".ebextensions").glob("*.config")):
        entries[f".ebextensions/{f.name}"] = f.read_bytes()
    entries["Dockerrun.aws.json"] = (HERE / "Dockerrun.aws.json").read_bytes()
    dockerignore = ROOT / ".dockerignore"
    if dockerignore.is_file():
        entries[".dockerignore"] = dockerignore.read_bytes()
    return entries


def write_bundle(out: Path) -> dict[str, bytes]:
    """Write the zip (deterministically) and return its entries."""
    entries = bundle_entries()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name])
    tmp.replace(out)
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command line: build the bundle and print where it is."""
    sys.path.insert(0, str(ROOT))
    from partcheck import __version__

    parser = argparse.ArgumentParser(prog="deploy/eb/bundle.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build" / "eb" / f"partcheck-review-{__version__}.zip"
    )
    args = parser.parse_args(argv)
    entries = write_bundle(args.out)
    size = args.out.stat().st_size
    print(
        f"{args.out} ({len(entries)} files, {size / 1024:.0f} KiB): deploy with `eb deploy` "
        "(Docker platform, see docs/review.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
