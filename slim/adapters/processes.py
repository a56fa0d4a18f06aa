"""What /proc tells of a process on this machine: its signal handlers, whether it is the first process
of its PID namespace, and where its links lead (its executable, working directory, open files)."""
from __future__ import annotations

import os


def catches_signal(pid: int, number: int) -> bool:
    """Whether the process has a handler installed for the signal (SigCgt in /proc/PID/status). A process
    that already exited catches nothing."""
    try:
        caught = _status_field(pid, "SigCgt") or ["0"]
    except OSError:
        return False
    return bool(int(caught[0], 16) >> (number - 1) & 1)


def proc_link(pid: int, name: str) -> str:
    """Where /proc/PID/NAME leads ("exe", "cwd", "fd/3"), as the process sees it; "" once the process (or
    that fd) is gone."""
    try:
        return os.readlink(f"/proc/{pid}/{name}")
    except OSError:
        return ""


def namespace_init_pidfd(pid: int) -> int | None:
    """A pidfd of process `pid` (it reads ready once the process has exited) if it is the first process of
    its PID namespace, whose exit ends every process there; None if it is not. ProcessLookupError once it
    has exited."""
    try:
        namespaced = _status_field(pid, "NSpid")
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    if len(namespaced) < 2 or namespaced[-1] != "1":
        return None
    return os.pidfd_open(pid)


def _status_field(pid: int, name: str) -> list[str]:
    """The values of one line of /proc/PID/status ([] when the kernel writes no such line)."""
    with open(f"/proc/{pid}/status") as status:
        return next((line.split()[1:] for line in status if line.startswith(f"{name}:")), [])
