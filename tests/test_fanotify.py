"""The cffi fanotify binding: the pure parser on hand-built buffers, then the real kernel on a tmpfs."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from slim.adapters.fanotify import (
    FAN_NOFD,
    FAN_ONDIR,
    FAN_OPEN,
    FAN_OPEN_EXEC,
    FAN_Q_OVERFLOW,
    Fanotify,
    RawEvent,
    parse_events,
)
from slim.errors import TracingUnavailable
from tests.helpers import fanotify_queue_limit

WATCH = FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR


def metadata(mask: int, fd: int, pid: int, event_len: int = 24, vers: int = 3) -> bytes:
    """One struct fanotify_event_metadata, padded to event_len like events that carry extra info."""
    return struct.pack("=IBBHQii", event_len, vers, 0, 24, mask, fd, pid).ljust(event_len, b"\0")


# ---------------------------------------------------------------- parse_events


def test_parses_one_event():
    assert parse_events(metadata(FAN_OPEN, fd=7, pid=1234)) == [RawEvent(mask=FAN_OPEN, fd=7, pid=1234)]


def test_walks_several_events_by_their_length():
    buf = metadata(FAN_OPEN, 5, 10) + metadata(FAN_OPEN | FAN_OPEN_EXEC, 6, 11, event_len=40) + metadata(FAN_OPEN, 8, 12)
    assert parse_events(buf) == [
        RawEvent(FAN_OPEN, 5, 10),
        RawEvent(FAN_OPEN | FAN_OPEN_EXEC, 6, 11),
        RawEvent(FAN_OPEN, 8, 12),
    ]


def test_overflow_event_has_no_fd():
    (event,) = parse_events(metadata(FAN_Q_OVERFLOW, fd=FAN_NOFD, pid=0))
    assert event.overflow and event.fd == FAN_NOFD
    assert not parse_events(metadata(FAN_OPEN, 3, 4))[0].overflow


def test_empty_read_has_no_events():
    assert parse_events(b"") == []


@pytest.mark.parametrize(
    "buf, message",
    [
        (metadata(FAN_OPEN, 3, 4)[:10], "ends inside an event header"),
        (metadata(FAN_OPEN, 3, 4) + b"\x01\x02", "ends inside an event header"),
        (metadata(FAN_OPEN, 3, 4, vers=2), "version 2"),
        (b"\xff" * 24, "version 255"),
        (struct.pack("=IBBHQii", 4096, 3, 0, 24, FAN_OPEN, 3, 4), "bad lengths"),
        (struct.pack("=IBBHQii", 0, 3, 0, 24, FAN_OPEN, 3, 4), "bad lengths"),
    ],
)
def test_garbage_is_a_clear_error(buf, message):
    with pytest.raises(ValueError, match=message):
        parse_events(buf)


# ---------------------------------------------------------------- the real kernel (root)


def drain(notifier: Fanotify) -> dict[Path, int]:
    """Everything queued, as path -> OR of the masks; closes every event fd."""
    seen: dict[Path, int] = {}
    while events := notifier.read(timeout=0.2):
        for event in events:
            path = Path(os.readlink(f"/proc/self/fd/{event.fd}"))
            seen[path] = seen.get(path, 0) | event.mask
            os.close(event.fd)
    return seen


def _ignore_opens_of_what_it_saw(notifier: Fanotify) -> None:
    """An ignore mark for FAN_OPEN on every inode the queue names; closes every event fd."""
    for event in notifier.read(timeout=1):
        notifier.ignore(event.fd, FAN_OPEN)
        os.close(event.fd)


def run_in(directory: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=directory, check=True, stdout=subprocess.DEVNULL)


@pytest.mark.engine
def test_reports_open_exec_and_listing_with_paths(tmpfs):
    with Fanotify() as notifier:
        notifier.mark_filesystem(tmpfs, WATCH)
        run_in(tmpfs, "cat data.txt && ./prog && ls dir")
        seen = drain(notifier)
    assert seen == {
        tmpfs / "data.txt": FAN_OPEN,
        tmpfs / "prog": FAN_OPEN | FAN_OPEN_EXEC,
        # Classic (fd-reporting) mode does not echo FAN_ONDIR back: the reader must fstat.
        tmpfs / "dir": FAN_OPEN,
    }


@pytest.mark.engine
def test_directory_opens_need_fan_ondir_in_the_mark(tmpfs):
    with Fanotify() as notifier:
        notifier.mark_filesystem(tmpfs, FAN_OPEN)
        run_in(tmpfs, "ls dir && cat data.txt")
        assert drain(notifier) == {tmpfs / "data.txt": FAN_OPEN}


@pytest.mark.engine
def test_ignore_mark_silences_later_opens_of_files_and_directories(tmpfs):
    with Fanotify() as notifier:
        notifier.mark_filesystem(tmpfs, WATCH)
        run_in(tmpfs, "cat data.txt && ls dir")
        _ignore_opens_of_what_it_saw(notifier)
        run_in(tmpfs, "cat data.txt && ls dir && cat unread.txt")
        assert drain(notifier) == {tmpfs / "unread.txt": FAN_OPEN}


@pytest.mark.engine
def test_ignoring_open_keeps_a_later_exec_visible(tmpfs):
    with Fanotify() as notifier:
        notifier.mark_filesystem(tmpfs, WATCH)
        run_in(tmpfs, "cat prog")
        _ignore_opens_of_what_it_saw(notifier)
        run_in(tmpfs, "./prog")
        assert drain(notifier) == {tmpfs / "prog": FAN_OPEN_EXEC}


@pytest.mark.engine
@pytest.mark.parametrize("bounded_queue", [True, False])
def test_queue_overflow_is_reported_only_with_the_bounded_queue(tmpfs, bounded_queue):
    files = fanotify_queue_limit() + 100
    with Fanotify(bounded_queue=bounded_queue) as notifier:
        notifier.mark_filesystem(tmpfs, WATCH)
        for number in range(files):
            (tmpfs / f"f{number}").touch()  # an open with O_CREAT: one event per new file
        events = []
        while batch := notifier.read(timeout=0.2):
            events += batch
            for event in batch:
                if event.fd != FAN_NOFD:
                    os.close(event.fd)
    overflows = [event for event in events if event.overflow]
    if bounded_queue:
        assert len(overflows) == 1 and overflows[0].fd == FAN_NOFD
        assert len(events) - 1 == fanotify_queue_limit()
    else:
        assert overflows == [] and len(events) == files


@pytest.mark.engine
def test_marking_a_missing_path_is_a_one_line_error(tmp_path):
    with Fanotify() as notifier, pytest.raises(TracingUnavailable, match="fanotify_mark .*: No such file"):
        notifier.mark_filesystem(tmp_path / "gone", WATCH)


@pytest.mark.engine
def test_without_cap_sys_admin_tracing_is_unavailable():
    code = "from slim.adapters.fanotify import Fanotify\nFanotify()"
    dropped = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert "TracingUnavailable: fanotify needs root (CAP_SYS_ADMIN)" in dropped.stderr
