"""The scan cache's second process (slim/static_analysis/parallel.py): `python -m slim.static_analysis.scan_worker`
reads a pickled list of (source, main) from stdin and writes, for each in order, one line: the stored form
of what scan_imports found. Ctrl-C is its parent's to handle: the parent ends it.
"""
from __future__ import annotations

import pickle
import signal
import sys

from .scancache import parsed


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for item in pickle.load(sys.stdin.buffer):
        sys.stdout.write(parsed(item) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
