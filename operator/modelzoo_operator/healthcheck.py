"""`python -m modelzoo_operator.healthcheck URL`: exit 0 when URL answers 200 (the chart's
`helm test` runs it against the operator's health endpoint). Standard library only."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence


def check(url: str, attempts: int = 30, delay: float = 2.0) -> bool:
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    print(f"healthcheck: {url} answered 200")
                    return True
        except (urllib.error.URLError, OSError) as exc:
            print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        if attempt + 1 < attempts:
            time.sleep(delay)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m modelzoo_operator.healthcheck URL", file=sys.stderr)
        return 2
    return 0 if check(args[0]) else 1


if __name__ == "__main__":
    sys.exit(main())
