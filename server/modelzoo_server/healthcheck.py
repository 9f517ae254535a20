"""`modelzoo-healthcheck URL`: exit 0 when URL answers 200 (the chart's `helm test` runs it
against the operator's health endpoint). Standard library only."""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence


def check(url: str, attempts: int, delay: float) -> bool:
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    print(f"healthcheck: {url} answered 200")
                    return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        if attempt + 1 < attempts:
            time.sleep(delay)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelzoo-healthcheck", description=__doc__)
    parser.add_argument("url", help="the health endpoint, e.g. http://host:8081/healthz")
    parser.add_argument("--attempts", type=int, default=30, help="tries before failing")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds between tries")
    args = parser.parse_args(argv)
    return 0 if check(args.url, max(args.attempts, 1), args.delay) else 1


if __name__ == "__main__":
    sys.exit(main())
