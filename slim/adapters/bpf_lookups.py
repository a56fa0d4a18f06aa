"""The lookup tracer in the kernel, where the host allows eBPF: programs on the tracepoints of the
path-lookup calls (stat, access, readlink, chdir, O_PATH opens) that record each path once, without
stopping the process that looks it up.

The seccomp filter (gate.c with lookupd.c) stops every such call until the host answers it: two context
switches per call, about 4 µs on this project's machines, paid again for every repeat (a web server
stats its docroot on each request). Here a program runs inside the call of a traced thread, reads the
path from the caller's memory, and sends it to the host (through a ring buffer) only if it has not sent
the same path before; a repeat costs a hash lookup. A relative path always goes out, with the names of
the directory it starts from (the working directory or the dirfd's), walked up to the process's root
during the call: by the time the host reads it the process may be gone, and its directory with it.

Which threads are traced: the gate's (added by the host when the gate connects, before it becomes the
program), and every thread forked from a traced one (sched_process_fork), dropped when it exits: the
processes the seccomp filter would cover. A process that `docker exec` starts is not. Their execs are
sent too, so a lookup is labelled with the program that made it even once that program has exited.

The programs are assembled here from a few instructions (no compiler needed, nothing to ship); the
calls' argument offsets come from the tracepoints' format files (no architecture's register layout is
assumed), the kernel structures' from its BTF (slim/adapters/btf.py). Anything the host refuses (no
privilege, an old kernel, no tracefs, no BTF) is BpfUnavailable: the seccomp filter takes over.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .bpf import (
    HELPER_COMM, HELPER_CURRENT_TASK, HELPER_DELETE, HELPER_LOOKUP, HELPER_PID_TGID, HELPER_READ_KERNEL,
    HELPER_READ_KERNEL_STR, HELPER_READ_USER_STR, HELPER_RINGBUF_OUTPUT, HELPER_UPDATE, MAP_HASH, MAP_PERCPU_ARRAY,
    MAP_RINGBUF, NO_PREALLOC, NOEXIST, R0, R1, R2, R3, R4, R6, R7, R8, R9, R10, BpfUnavailable, Program, RingBuffer,
    attach, create_map, load, map_update, per_cpu_sum, tracefs, tracepoint_fields,
)
from .btf import BtfUnavailable, field_offsets
from .seccomp import LookupRecord

# <fcntl.h>
_O_PATH = 0o10000000
_O_NOFOLLOW = 0o400000
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000

# What the kernel side sends: dirfd s32 (fork: the child's thread id; exec done: the new one), thread id
# u32, the path's length u32 (with the NUL), kind u32, the directory's length u32 and state u32, comm[16];
# then the key it remembers sent paths by: follow u32, zero u32, the path's first KEY_PATH bytes (the
# whole path follows on; a path too long for the key is sent every time, the host dedupes); then, for a
# relative path, the names from its directory up to the process's root, NUL-terminated, nearest first.
_HEAD = struct.Struct("=iIIIII16s")
_OTHER, _TID, _LENGTH, _KIND, _DIR_LENGTH, _DIR_STATE, _COMM = 0, 4, 8, 12, 16, 20, 24  # its fields' offsets
_KEY_AT = _HEAD.size
_PATH_AT = _KEY_AT + 8
KEY_PATH = 256
KEY_SIZE = 8 + KEY_PATH
PATH_SIZE = 4096  # PATH_MAX
_DIR_AT = _PATH_AT + PATH_SIZE
_DIR_WINDOW = 2048  # where a name may start (a power of two: a mask bounds the offset for the verifier)
_NAME_READ = 256  # NAME_MAX and its NUL
DIR_DEPTH = 40  # directories walked up at most
EVENT_SIZE = _DIR_AT + _DIR_WINDOW + _NAME_READ
_NO_DIR, _DIR_PLACED, _DIR_UNPLACED = 0, 1, 2
# The kernel's fields the walk reads (their offsets: slim/adapters/btf.py).
KERNEL_FIELDS = {
    "task_struct": ("fs", "files"), "fs_struct": ("root", "pwd"), "path": ("mnt", "dentry"),
    "vfsmount": ("mnt_root",), "dentry": ("d_parent", "d_name"), "qstr": ("name",),
    "files_struct": ("fdt",), "fdtable": ("max_fds", "fd"), "file": ("f_path",),
}
SEEN_MAX = 65536  # paths remembered in the kernel; beyond that every lookup goes out, the host dedupes
TRACED_MAX = 65536  # threads traced at once
RING_SIZE = 4 << 20
_CALLS, _LOST = 0, 1  # the per-CPU counters
LOOKUP, EXEC_TRIED, EXEC_DONE, FORKED = 0, 1, 2, 3  # the events' kinds


@dataclass(frozen=True)
class Shape:
    """Where a lookup call keeps what the tracer needs, by the names its tracepoint's format file uses."""

    path: str
    dirfd: str = ""
    flags: str = ""
    nofollow: int = 0  # the flag bit that turns symlink following off
    follows: bool = True  # False: the call looks at a symlink itself
    only_with: int = 0  # the call is a lookup only with this flag (an O_PATH open)
    not_with: int = 0  # the call names no path with this flag (fstat is newfstatat(fd, "", AT_EMPTY_PATH))


EXECS = {"execve": Shape("filename"), "execveat": Shape("filename", dirfd="fd")}
# The calls the seccomp filter stops (gate.c), by tracepoint; an architecture may lack some (arm64: stat).
SHAPES = {
    "newstat": Shape("filename"),
    "newlstat": Shape("filename", follows=False),
    "access": Shape("filename"),
    "readlink": Shape("path", follows=False),
    "chdir": Shape("filename"),
    "faccessat": Shape("filename", dirfd="dfd"),
    "faccessat2": Shape("filename", dirfd="dfd", flags="flags", nofollow=_AT_SYMLINK_NOFOLLOW),
    "readlinkat": Shape("pathname", dirfd="dfd", follows=False),
    "openat": Shape("filename", dirfd="dfd", flags="flags", nofollow=_O_NOFOLLOW, only_with=_O_PATH),
    "open": Shape("filename", flags="flags", nofollow=_O_NOFOLLOW, only_with=_O_PATH),
    "statx": Shape("filename", dirfd="dfd", flags="flags", nofollow=_AT_SYMLINK_NOFOLLOW, not_with=_AT_EMPTY_PATH),
    "newfstatat": Shape("filename", dirfd="dfd", flags="flag", nofollow=_AT_SYMLINK_NOFOLLOW,
                        not_with=_AT_EMPTY_PATH),
}

def _enter(p: Program, maps: Maps) -> None:
    """R6 = the tracepoint's record, the thread id at R10-4; to "out" unless the thread is traced."""
    p.mov(R6, R1)
    p.call(HELPER_PID_TGID)
    p.store(4, R10, -4, R0)  # the low half
    p.map_lookup(maps.traced, -4, "out")


def _event(p: Program, maps: Maps, kind: int) -> None:
    """R8 = this CPU's event (to "out" if there is none), its key zeroed (the key is hashed whole: no
    bytes of an earlier path may follow the NUL), its kind and thread id set."""
    p.store_imm(4, R10, -8, 0)
    p.map_lookup(maps.scratch, -8, "out")
    p.mov(R8, R0)
    for offset in range(_KEY_AT, _KEY_AT + KEY_SIZE, 8):
        p.store_imm(8, R8, offset, 0)
    p.store_imm(4, R8, _KIND, kind)
    p.store_imm(4, R8, _DIR_STATE, _NO_DIR)
    p.load(4, R1, R10, -4)
    p.store(4, R8, _TID, R1)


def _read_path(p: Program, address_at: int) -> None:
    """The string at the user address in the record's field: into the event, its length (with the NUL)
    at the event's offset 8 and in R9; to "out" if unreadable or empty."""
    p.mov(R1, R8)
    p.add_imm(R1, _PATH_AT)
    p.mov_imm(R2, PATH_SIZE)
    p.load(8, R3, R6, address_at)
    p.call(HELPER_READ_USER_STR)
    p.jump_if(R0, "s<=", 1, "out")
    p.jump_if(R0, ">", PATH_SIZE, "out")  # never: the bound the verifier wants for the size sent
    p.mov(R9, R0)
    p.store(4, R8, _LENGTH, R0)


def _send(p: Program, maps: Maps, with_path: bool, size: int = 0) -> None:
    """The event (its first `size` bytes; else with its path, R9 bytes, or without), and the comm of the
    thread; counted if lost."""
    p.mov(R1, R8)
    p.add_imm(R1, _COMM)
    p.mov_imm(R2, 16)
    p.call(HELPER_COMM)
    p.map_fd(R1, maps.ring)
    p.mov(R2, R8)
    if size:
        p.mov_imm(R3, size)
    elif with_path:
        p.mov(R3, R9)
        p.add_imm(R3, _PATH_AT)
    else:
        p.mov_imm(R3, _PATH_AT)
    p.mov_imm(R4, 0)
    p.call(HELPER_RINGBUF_OUTPUT)
    p.jump_if(R0, "==", 0, "out")
    p.count(maps.counters, _LOST, "out")


def _trace_thread(p: Program, maps: Maps, field_at: int) -> None:
    """Trace the thread whose id is in the record's field."""
    p.load(4, R1, R6, field_at)
    p.store(4, R10, -16, R1)
    p.store_imm(4, R10, -12, 1)
    p.map_fd(R1, maps.traced)
    p.stack_pointer(R2, -16)
    p.stack_pointer(R3, -12)
    p.mov_imm(R4, 0)
    p.call(HELPER_UPDATE)


def _other_thread(p: Program, field_at: int) -> None:
    """Event's first word = the thread id in the record's field (fork: the child; exec: the old id)."""
    p.load(4, R1, R6, field_at)
    p.store(4, R8, _OTHER, R1)


def lookup_program(shape: Shape, fields: dict[str, int], maps: Maps, kernel: dict[str, int]) -> Program:
    """For one lookup call: a traced thread's path goes out once; a relative one always, with the names of
    the directory it starts from (`kernel`: the offsets of KERNEL_FIELDS)."""
    p = Program()
    _enter(p, maps)
    if shape.flags:
        p.load(8, R7, R6, fields[shape.flags])
        if shape.only_with:
            p.jump_if(R7, "&", shape.only_with, "lookup")
            p.jump("out")
            p.label("lookup")
        if shape.not_with:
            p.jump_if(R7, "&", shape.not_with, "out")
    p.count(maps.counters, _CALLS, "out")
    _event(p, maps, LOOKUP)
    p.store_imm(4, R8, _KEY_AT, int(shape.follows))
    if shape.follows and shape.nofollow:
        p.jump_if(R7, "&", shape.nofollow, "nofollow")
        p.jump("followed")
        p.label("nofollow")
        p.store_imm(4, R8, _KEY_AT, 0)
        p.label("followed")
    _read_path(p, fields[shape.path])
    p.load(1, R1, R8, _PATH_AT)
    p.jump_if(R1, "!=", ord("/"), "relative")
    p.jump_if(R9, ">", KEY_PATH, "send")  # longer than the key
    # Sent before? Looked up first, without a lock: every worker of a server stats the same few paths, and
    # an update takes the bucket's lock even to find the path there already.
    p.map_fd(R1, maps.seen)
    p.mov(R2, R8)
    p.add_imm(R2, _KEY_AT)
    p.call(HELPER_LOOKUP)
    p.jump_if(R0, "!=", 0, "out")
    p.store_imm(4, R10, -12, 1)
    p.map_fd(R1, maps.seen)
    p.mov(R2, R8)
    p.add_imm(R2, _KEY_AT)
    p.stack_pointer(R3, -12)
    p.mov_imm(R4, NOEXIST)
    p.call(HELPER_UPDATE)
    p.jump_if(R0, "==", -errno.EEXIST, "out")  # another CPU was first (a full map sends it: the host dedupes)
    p.label("send")
    _dirfd(p, shape, fields)
    _send(p, maps, with_path=True)
    p.jump("out")
    p.label("relative")
    _dirfd(p, shape, fields)
    _walk_directory(p, kernel)
    _send(p, maps, with_path=False, size=EVENT_SIZE)
    p.label("out")
    p.exit()
    return p


# Stack slots of the walk (R10 + offset).
_FS, _ROOT, _START, _MNT_ROOT, _DENTRY, _NAME, _MAX_FDS = -88, -40, -56, -64, -72, -80, -16


def _read_kernel(p: Program, to: int, size: int, base_slot: int | None, offset: int, fail: str) -> None:
    """R10+to = `size` bytes at (the pointer in stack slot base_slot, or R1 if None) + offset."""
    if base_slot is not None:
        p.load(8, R3, R10, base_slot)
    else:
        p.mov(R3, R1)
    p.add_imm(R3, offset)
    p.stack_pointer(R1, to)
    p.mov_imm(R2, size)
    p.call(HELPER_READ_KERNEL)
    p.jump_if(R0, "!=", 0, fail)


def _walk_directory(p: Program, kernel: dict[str, int]) -> None:
    """The names from the directory a relative path starts from (the dirfd in the event's first word, or
    the working directory) up to the process's root, into the event; its state says whether it got there
    (not across a mount inside the container, nor deeper than DIR_DEPTH: the host tries /proc then)."""
    p.store_imm(4, R8, _DIR_STATE, _DIR_UNPLACED)
    p.mov_imm(R7, 0)  # where the next name goes
    p.call(HELPER_CURRENT_TASK)
    p.store(8, R10, -24, R0)
    _read_kernel(p, _FS, 8, -24, kernel["task_struct.fs"], "walked")
    _read_kernel(p, _ROOT, 16, _FS, kernel["fs_struct.root"], "walked")
    p.load(4, R1, R8, _OTHER)
    p.jump32_if(R1, "!=", _AT_FDCWD, "from_fd")
    _read_kernel(p, _START, 16, _FS, kernel["fs_struct.pwd"], "walked")
    p.jump("start")
    p.label("from_fd")
    _read_kernel(p, _FS, 8, -24, kernel["task_struct.files"], "walked")
    _read_kernel(p, _FS, 8, _FS, kernel["files_struct.fdt"], "walked")
    _read_kernel(p, _MAX_FDS, 4, _FS, kernel["fdtable.max_fds"], "walked")
    _read_kernel(p, _FS, 8, _FS, kernel["fdtable.fd"], "walked")
    p.load(4, R1, R8, _OTHER)
    p.load(4, R2, R10, _MAX_FDS)
    p.jump_if_reg(R1, ">=", R2, "walked")  # not an open fd (unsigned: a negative one too)
    p.shift_left(R1, 3)
    p.load(8, R2, R10, _FS)
    p.add(R1, R2)
    _read_kernel(p, _FS, 8, None, 0, "walked")  # the struct file
    p.load(8, R1, R10, _FS)
    p.jump_if(R1, "==", 0, "walked")
    _read_kernel(p, _START, 16, _FS, kernel["file.f_path"], "walked")
    p.label("start")
    p.load(8, R1, R10, _START + kernel["path.dentry"])
    p.store(8, R10, _DENTRY, R1)
    _read_kernel(p, _MNT_ROOT, 8, _START + kernel["path.mnt"], kernel["vfsmount.mnt_root"], "walked")
    p.mov_imm(R9, 0)  # directories walked up (a bounded loop: the verifier follows every turn)
    p.label("up")
    p.load(8, R1, R10, _DENTRY)
    p.load(8, R2, R10, _ROOT + kernel["path.dentry"])
    p.jump_if_reg(R1, "!=", R2, "below_root")
    p.load(8, R1, R10, _START + kernel["path.mnt"])
    p.load(8, R2, R10, _ROOT + kernel["path.mnt"])
    p.jump_if_reg(R1, "==", R2, "placed")
    p.label("below_root")
    p.load(8, R1, R10, _DENTRY)
    p.load(8, R2, R10, _MNT_ROOT)
    p.jump_if_reg(R1, "==", R2, "walked")  # the root of another mount
    _read_kernel(p, _NAME, 8, _DENTRY, kernel["dentry.d_name"] + kernel["qstr.name"], "walked")
    p.mov(R1, R8)
    p.add_imm(R1, _DIR_AT)
    p.mov(R2, R7)
    p.and_imm(R2, _DIR_WINDOW - 1)
    p.add(R1, R2)
    p.mov_imm(R2, _NAME_READ)
    p.load(8, R3, R10, _NAME)
    p.call(HELPER_READ_KERNEL_STR)
    p.jump_if(R0, "s<=", 0, "walked")
    p.add(R7, R0)
    p.jump_if(R7, ">=", _DIR_WINDOW, "walked")
    _read_kernel(p, _DENTRY, 8, _DENTRY, kernel["dentry.d_parent"], "walked")
    p.add_imm(R9, 1)
    p.jump_if(R9, "<", DIR_DEPTH, "up")
    p.jump("walked")
    p.label("placed")
    p.store_imm(4, R8, _DIR_STATE, _DIR_PLACED)
    p.store(4, R8, _DIR_LENGTH, R7)
    p.label("walked")


def _dirfd(p: Program, shape: Shape, fields: dict[str, int]) -> None:
    if shape.dirfd:
        p.load(8, R1, R6, fields[shape.dirfd])
        p.store(4, R8, _OTHER, R1)
    else:
        p.store_imm(4, R8, _OTHER, _AT_FDCWD)


def exec_program(shape: Shape, fields: dict[str, int], maps: Maps) -> Program:
    """An exec a traced thread tries: the host names the thread's program by it once it succeeds (read
    later from /proc, a short-lived program's name would be gone)."""
    p = Program()
    _enter(p, maps)
    _event(p, maps, EXEC_TRIED)
    _read_path(p, fields[shape.path])
    _dirfd(p, shape, fields)
    _send(p, maps, with_path=True)
    p.label("out")
    p.exit()
    return p


def exec_done_program(fields: dict[str, int], maps: Maps) -> Program:
    """A traced thread's exec succeeded. The thread may have changed id (a thread other than the leader
    execs as the leader): traced under the new one too."""
    p = Program()
    p.mov(R6, R1)
    p.load(4, R1, R6, fields["old_pid"])
    p.store(4, R10, -4, R1)
    p.map_lookup(maps.traced, -4, "out")
    _trace_thread(p, maps, fields["pid"])
    _event(p, maps, EXEC_DONE)  # thread id: the old one
    _other_thread(p, fields["pid"])
    _send(p, maps, with_path=False)
    p.label("out")
    p.exit()
    return p


def fork_program(fields: dict[str, int], maps: Maps) -> Program:
    """A thread forked by a traced thread is traced (the tracepoint runs in the parent, before the child
    runs); the host hears of it, for the child's program."""
    p = Program()
    _enter(p, maps)
    _trace_thread(p, maps, fields["child_pid"])
    _event(p, maps, FORKED)
    _other_thread(p, fields["child_pid"])
    _send(p, maps, with_path=False)
    p.label("out")
    p.exit()
    return p


def exit_program(maps: Maps) -> Program:
    """A thread that exits is no longer traced: its id may soon name another, anywhere on the host."""
    p = Program()
    p.call(HELPER_PID_TGID)
    p.store(4, R10, -4, R0)
    p.map_fd(R1, maps.traced)
    p.stack_pointer(R2, -4)
    p.call(HELPER_DELETE)
    p.exit()
    return p


@dataclass(frozen=True)
class Maps:
    traced: int  # thread id -> 1
    seen: int  # (follow, absolute path) -> 1: sent already
    scratch: int  # one event per CPU (too big for the stack)
    counters: int  # per CPU: lookup calls, events the ring had no room for
    ring: int

    @classmethod
    def create(cls) -> Maps:
        return cls(
            traced=create_map(MAP_HASH, 4, 4, TRACED_MAX),
            seen=create_map(MAP_HASH, KEY_SIZE, 4, SEEN_MAX, NO_PREALLOC),
            scratch=create_map(MAP_PERCPU_ARRAY, 4, EVENT_SIZE, 1),
            counters=create_map(MAP_PERCPU_ARRAY, 4, 8, 2),
            ring=create_map(MAP_RINGBUF, 0, 0, RING_SIZE),
        )

    def fds(self) -> tuple[int, ...]:
        return self.traced, self.seen, self.scratch, self.counters, self.ring


class BpfLookups:
    """The programs attached and their maps: `follow(pid)` traces a thread and whatever it forks from then
    on; `read()` gives what they recorded since the last read. Owns every fd: close() detaches all."""

    def __init__(self, cache: Path) -> None:
        """`cache`: where the kernel's field offsets are kept between runs."""
        self._fds: list[int] = []
        self._sent: set[tuple[bool, str]] = set()
        self._programs: dict[int, str] = {}  # thread id -> its program, as its exec named it
        self._tried: dict[int, str] = {}  # thread id -> the program its last exec call named
        self.unplaced = 0  # relative paths whose directory was gone by the time they were read
        try:
            self._attach_all(cache)
        except BaseException:
            self.close()
            raise

    def _attach_all(self, cache: Path) -> None:
        events = tracefs() / "events"
        try:
            kernel = field_offsets(KERNEL_FIELDS, cache)
        except BtfUnavailable as why:
            raise BpfUnavailable(str(why)) from why
        self._maps = Maps.create()
        self._fds += self._maps.fds()
        self._ring = RingBuffer(self._maps.ring, RING_SIZE)
        sched = events / "sched"
        self._run(fork_program(tracepoint_fields(sched / "sched_process_fork"), self._maps), sched / "sched_process_fork")
        self._run(exec_done_program(tracepoint_fields(sched / "sched_process_exec"), self._maps), sched / "sched_process_exec")
        self._run(exit_program(self._maps), sched / "sched_process_exit")
        for call, shape in SHAPES.items():
            event = events / "syscalls" / f"sys_enter_{call}"
            if event.is_dir():
                self._run(lookup_program(shape, tracepoint_fields(event), self._maps, kernel), event)
        for call, shape in EXECS.items():
            event = events / "syscalls" / f"sys_enter_{call}"
            if event.is_dir():
                self._run(exec_program(shape, tracepoint_fields(event), self._maps), event)

    def _run(self, program: Program, event: Path) -> None:
        program_fd = load(program, f"slim_{event.name}"[:15])
        self._fds.append(program_fd)
        self._fds.append(attach(program_fd, event))

    def follow(self, pid: int) -> None:
        map_update(self._maps.traced, ctypes.c_uint32(pid), ctypes.c_uint32(1))

    def fileno(self) -> int:
        """Readable (poll) when the kernel side has sent something."""
        return self._maps.ring

    def read(self) -> list[LookupRecord]:
        records = []
        for event in self._ring.records():
            other, tid, length, kind, dir_length, dir_state, comm = _HEAD.unpack_from(event, 0)
            path = os.fsdecode(event[_PATH_AT:_PATH_AT + length - 1]) if length else ""
            if kind == FORKED:
                self._programs[other] = self._programs.get(tid, "")
            elif kind == EXEC_TRIED:
                self._tried[tid] = _absolute(path, tid, other) or path
            elif kind == EXEC_DONE:
                # Read at once, /proc names the program as the kernel resolved it (symlinks, #! interpreters).
                self._programs[other] = _read_link(f"/proc/{other}/exe") or self._tried.pop(tid, "")
            elif record := self._record(_placed(path, event, dir_length, dir_state), tid, other,
                                        follow=struct.unpack_from("=I", event, _KEY_AT)[0] == 1,
                                        comm=os.fsdecode(comm.rstrip(b"\0"))):
                records.append(record)
        return records

    def _record(self, path: str, tid: int, dirfd: int, follow: bool, comm: str) -> LookupRecord | None:
        """A lookup not reported yet, made absolute."""
        absolute = _absolute(path, tid, dirfd)
        if absolute is None:
            self.unplaced += 1
            return None
        if (follow, absolute) in self._sent:
            return None
        self._sent.add((follow, absolute))
        program = self._programs.get(tid) or _read_link(f"/proc/{tid}/exe") or comm
        return LookupRecord(path=absolute, follow=follow, program=program)

    def calls(self) -> tuple[int, int]:
        """Lookup calls of traced threads, and those the ring had no room for, summed over the CPUs."""
        return per_cpu_sum(self._maps.counters, _CALLS), per_cpu_sum(self._maps.counters, _LOST)

    def close(self) -> None:
        """Detach and free everything. Slow: each tracepoint left waits for an RCU grace period (60 ms or
        more here)."""
        if getattr(self, "_ring", None) is not None:
            self._ring.close()
            self._ring = None
        while self._fds:  # the perf events first: detached before their programs go
            os.close(self._fds.pop())  # taken off first: never closed twice (the number may be another's by then)


def _placed(path: str, event: bytes, dir_length: int, dir_state: int) -> str:
    """A relative path made absolute with the directory the kernel side walked, if it got to the root."""
    if dir_state != _DIR_PLACED:
        return path
    names = os.fsdecode(event[_DIR_AT:_DIR_AT + dir_length]).split("\0")[:-1]
    return "/" + "/".join([*reversed(names), path])


def _read_link(link: str) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return ""


def _absolute(path: str, tid: int, dirfd: int) -> str | None:
    """The path as the container sees it; a relative one against the caller's directory, read now (the
    caller is not stopped: had it exited or moved since, the lookup cannot be placed: None)."""
    if path.startswith("/"):
        return path
    base = _read_link(f"/proc/{tid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{tid}/fd/{dirfd}")
    if not base.startswith("/") or base.endswith(" (deleted)"):
        return None
    return base.rstrip("/") + "/" + path
