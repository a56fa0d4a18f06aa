"""Taking turns on the machine's Docker engine, and removing what bench created.

The test suite holds a machine-wide lock around each engine test (tests/conftest.py): bench takes the
same lock around each measurement, so a test run never sees bench's containers as its own leaks, and
bench never times a build while a test run competes for the same two cores.
"""
from __future__ import annotations

import contextlib
import fcntl
import tempfile
from pathlib import Path
from typing import Iterator

import docker
import docker.errors

ENGINE_LOCK_PATH = Path(tempfile.gettempdir()) / "slimtrace-engine-tests.lock"


@contextlib.contextmanager
def engine_turn() -> Iterator[None]:
    with open(ENGINE_LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def remove_image(client: docker.DockerClient, ref: str) -> None:
    """Remove an image by tag or id; no error if it is already gone."""
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
        client.images.remove(ref, force=True, noprune=False)
