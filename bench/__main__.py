"""``make bench``: run every benchmark in turn, each in its own process, and print its figures.

Usage: ``python -m bench [NAME ...] [--json]`` (default: all, in the order below).
A benchmark that crashes is reported and the others still run; the exit code is 1 then.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from typing import Final

#: Every benchmark module under bench/, in the order ``make bench`` runs them.
BENCHMARKS: Final = ("footprint", "ingest", "commands", "api", "fanin", "recovery")


def main() -> int:
    """Run the chosen benchmarks; 0 when every one ran to the end."""
    names = [a for a in sys.argv[1:] if not a.startswith("-")] or list(BENCHMARKS)
    flags = [a for a in sys.argv[1:] if a.startswith("-")]
    failed: list[str] = []
    for name in names:
        if importlib.util.find_spec(f"bench.{name}") is None:
            print(f"bench: no benchmark named {name!r} (have: {', '.join(BENCHMARKS)})", file=sys.stderr)
            failed.append(name)
            continue
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *flags])
        print(f"-- {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - started:.0f} s")
        if code != 0:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
