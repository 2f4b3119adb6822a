"""The command line: ``python -m semcorr.data.download NAME [--root DIR] ...`` (see the package
docstring)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from semcorr.errors import ConfigError, SemcorrError

from .catalogue import DATASETS, get_spec
from .fetcher import download


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (its help lists the datasets)."""
    lines = [f"  {n:<9} {s.description} (default root data/{s.folder})" for n, s in DATASETS.items()]
    return argparse.ArgumentParser(
        prog="python -m semcorr.data.download",
        description="Download a semantic-correspondence benchmark into the layout semcorr reads.",
        epilog="datasets:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 download error, 2 bad arguments)."""
    parser = build_parser()
    parser.add_argument("name", nargs="?", help=f"dataset to download: {', '.join(DATASETS)}")
    parser.add_argument("--root", type=Path, default=None, help="dataset folder (= dataset.root); default data/<folder>")
    parser.add_argument("--force", action="store_true", help="download and extract again even if present")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(parser.epilog)
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print(f"error: give a dataset name: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        get_spec(args.name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        download(args.name, args.root, force=args.force, keep_archive=args.keep_archive, quiet=args.quiet)
    except SemcorrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0
