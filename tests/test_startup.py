"""What `slim` loads before it runs a command: libraries only some commands use are imported where they are
used (an SBOM, an ELF file, a probe file), not by every start-up."""
from __future__ import annotations

import subprocess
import sys

IMPORTED_WHERE_USED = ("cyclonedx", "elftools.elf.elffile", "yaml")


def test_start_up_leaves_out_libraries_only_some_commands_use():
    code = f"import sys, slim.cli; print(*(name for name in {IMPORTED_WHERE_USED!r} if name in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
