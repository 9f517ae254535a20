"""`modelzoo-models build [NAME ...]` builds the zoo; `modelzoo-models dir` prints where."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelzoo_models import run_recipes, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelzoo-models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build", help="build zoo graphs into the cache (cached entries are kept)"
    )
    build.add_argument("names", nargs="*", help="zoo entries to build (default: all)")
    build.add_argument("--out", type=Path, help="output folder (default: the versioned cache)")
    sub.add_parser("dir", help="print the folder that holds the built graphs and catalog.json")
    args = parser.parse_args(argv)

    if args.command == "dir":
        print(store.model_dir())
        return 0
    try:
        catalog = run_recipes.build(args.out or store.model_dir(), args.names)
    except Exception as exc:  # one readable line, not a traceback, for a failed build
        print(f"modelzoo-models: build failed: {exc}", file=sys.stderr)
        return 1
    print(catalog.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
