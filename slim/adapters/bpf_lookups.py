"""The lookup tracer in the kernel, where the host allows eBPF: a program on the raw sys_enter tracepoint
that records the paths the path-lookup calls (stat, access, readlink, chdir, O_PATH opens) of the traced
threads name, each once, without stopping the process that looks it up.

The seccomp filter (gate.c with lookupd.c) stops every such call until the host answers it: two context
switches per call, about 4 µs on this project's machines, paid again for every repeat (a web server
stats its docroot on each request). Here the program runs inside the call, reads the path from the
caller's memory, and sends it to the host (through a ring buffer) only if it has not sent the same path
before; a repeat costs a hash lookup. A relative path always goes out, with the names of the directory
it starts from (the working directory or the dirfd's), walked up to the process's root during the call:
by the time the host reads it the process may be gone, and its directory with it.

Which threads are traced: the gate's (added by the host when the gate connects, before it becomes the
program), and every thread forked from a traced one (sched_process_fork), dropped when it exits: the
processes the seccomp filter would cover. A process that `docker exec` starts is not. Their execs are
sent too, so a lookup is labelled with the program that made it even once that program has exited.

The programs are assembled here (slim/adapters/bpf.py: no compiler, nothing to ship) for the machine's
call numbers and register layout (ARCHITECTURES) and the kernel structures' offsets (from its BTF,
slim/adapters/btf.py). Raw tracepoints, not perf events: detaching one of those waits out an RCU grace
period (60 to 80 ms each here). Anything the host refuses is BpfUnavailable: the seccomp filter takes over.
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
    attach, create_map, load, map_update, per_cpu_sum,
)
from .btf import BtfUnavailable, field_offsets
from .processes import proc_link
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
_WALK_FIELDS = {
    "fs_struct": ("root", "pwd"), "path": ("mnt", "dentry"), "vfsmount": ("mnt_root",),
    "dentry": ("d_parent", "d_name"), "qstr": ("name",), "files_struct": ("fdt",), "fdtable": ("max_fds", "fd"),
    "file": ("f_path",),
}
SEEN_MAX = 65536  # paths remembered in the kernel; beyond that every lookup goes out, the host dedupes
TRACED_MAX = 65536  # threads traced at once
RING_SIZE = 4 << 20
_CALLS, _LOST = 0, 1  # the per-CPU counters
LOOKUP, EXEC_TRIED, EXEC_DONE, FORKED = 0, 1, 2, 3  # the events' kinds


@dataclass(frozen=True)
class Shape:
    """Where a lookup call keeps what the tracer needs: its arguments' positions (-1: none)."""

    path: int
    dirfd: int = -1
    flags: int = -1
    nofollow: int = 0  # the flag bit that turns symlink following off
    follows: bool = True  # False: the call looks at a symlink itself
    only_with: int = 0  # the call is a lookup only with this flag (an O_PATH open)
    not_with: int = 0  # the call names no path with this flag (fstat is newfstatat(fd, "", AT_EMPTY_PATH))


# The calls the seccomp filter stops (gate.c, lookupd.c); an architecture may lack some (arm64: stat).
SHAPES = {
    "stat": Shape(0),
    "lstat": Shape(0, follows=False),
    "access": Shape(0),
    "readlink": Shape(0, follows=False),
    "chdir": Shape(0),
    "faccessat": Shape(1, dirfd=0),
    "faccessat2": Shape(1, dirfd=0, flags=3, nofollow=_AT_SYMLINK_NOFOLLOW),
    "readlinkat": Shape(1, dirfd=0, follows=False),
    "openat": Shape(1, dirfd=0, flags=2, nofollow=_O_NOFOLLOW, only_with=_O_PATH),
    "open": Shape(0, flags=1, nofollow=_O_NOFOLLOW, only_with=_O_PATH),
    "statx": Shape(1, dirfd=0, flags=2, nofollow=_AT_SYMLINK_NOFOLLOW, not_with=_AT_EMPTY_PATH),
    "newfstatat": Shape(1, dirfd=0, flags=3, nofollow=_AT_SYMLINK_NOFOLLOW, not_with=_AT_EMPTY_PATH),
}
EXECS = {"execve": Shape(0), "execveat": Shape(1, dirfd=0)}


@dataclass(frozen=True)
class Architecture:
    """What the programs need to know of a machine: its call numbers (the raw sys_enter tracepoint gives a
    number), where struct pt_regs keeps a call's arguments, and how to tell a native call from a 32-bit one
    (whose numbers mean other calls)."""

    numbers: dict[str, int]
    argument_fields: tuple[str, ...]  # pt_regs fields of arguments 0..5; one name: an array of them
    native_field: str
    native_test: str  # "==": the field equals native_value; "&": native_value's bits are clear
    native_value: int


ARCHITECTURES = {
    "x86_64": Architecture(
        numbers={"stat": 4, "lstat": 6, "access": 21, "readlink": 89, "chdir": 80, "faccessat": 269,
                 "faccessat2": 439, "readlinkat": 267, "openat": 257, "open": 2, "statx": 332, "newfstatat": 262,
                 "execve": 59, "execveat": 322},
        argument_fields=("di", "si", "dx", "r10", "r8", "r9"), native_field="cs", native_test="==",
        native_value=0x33,  # __USER_CS; a 32-bit process runs in __USER32_CS
    ),
    "aarch64": Architecture(
        numbers={"chdir": 49, "faccessat": 48, "faccessat2": 439, "readlinkat": 78, "openat": 56, "statx": 291,
                 "newfstatat": 79, "execve": 221, "execveat": 281},
        argument_fields=("regs",), native_field="pstate", native_test="&", native_value=0x10,  # PSR_MODE32_BIT
    ),
}


def kernel_fields(arch: Architecture) -> dict[str, tuple[str, ...]]:
    """The kernel structures' fields the programs read (their offsets: slim/adapters/btf.py)."""
    return {**_WALK_FIELDS, "task_struct": ("fs", "files", "pid"), "linux_binprm": ("file",),
            "pt_regs": (*arch.argument_fields, arch.native_field)}


def _argument_offset(arch: Architecture, kernel: dict[str, int], index: int) -> int:
    if len(arch.argument_fields) == 1:  # an array of registers
        return kernel[f"pt_regs.{arch.argument_fields[0]}"] + 8 * index
    return kernel[f"pt_regs.{arch.argument_fields[index]}"]


# Stack slots (R10 + offset) of the programs: the thread id, keys and values of map calls, what the walk
# reads, and a lookup call's arguments.
_THREAD, _KEY, _ONE, _OTHER_THREAD = -4, -8, -12, -16
_TASK, _ROOT, _START, _MNT_ROOT, _DENTRY, _NAME, _FS, _MAX_FDS = -24, -40, -56, -64, -72, -80, -88, -144
_REGS, _PATH_PTR, _DIRFD, _FLAGS, _FOLLOW, _NATIVE = -96, -104, -112, -120, -128, -136


def _traced_thread(p: Program, maps: Maps) -> None:
    """The current thread's id at _THREAD; to "out" unless it is traced."""
    p.call(HELPER_PID_TGID)
    p.store(4, R10, _THREAD, R0)  # the low half
    p.map_lookup(maps.traced, _THREAD, "out")


def _event(p: Program, maps: Maps, kind: int) -> None:
    """R8 = this CPU's event (to "out" if there is none), its key zeroed (the key is hashed whole: no
    bytes of an earlier path may follow the NUL), its kind and thread id set."""
    p.store_imm(4, R10, _KEY, 0)
    p.map_lookup(maps.scratch, _KEY, "out")
    p.mov(R8, R0)
    for offset in range(_KEY_AT, _KEY_AT + KEY_SIZE, 8):
        p.store_imm(8, R8, offset, 0)
    p.store_imm(4, R8, _KIND, kind)
    p.store_imm(4, R8, _DIR_STATE, _NO_DIR)
    p.load(4, R1, R10, _THREAD)
    p.store(4, R8, _TID, R1)


def _read_path(p: Program) -> None:
    """The string at the call's path argument: into the event, its length (with the NUL) there and in R9;
    to "out" if unreadable or empty. Then the call's dirfd into the event."""
    p.mov(R1, R8)
    p.add_imm(R1, _PATH_AT)
    p.mov_imm(R2, PATH_SIZE)
    p.load(8, R3, R10, _PATH_PTR)
    p.call(HELPER_READ_USER_STR)
    p.jump_if(R0, "s<=", 1, "out")
    p.jump_if(R0, ">", PATH_SIZE, "out")  # never: the bound the verifier wants for the size sent
    p.mov(R9, R0)
    p.store(4, R8, _LENGTH, R0)
    p.load(8, R1, R10, _DIRFD)
    p.store(4, R8, _OTHER, R1)


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


def _trace_thread(p: Program, maps: Maps, task_slot: int, kernel: dict[str, int]) -> None:
    """Trace the thread of the task whose address is in the stack slot; its id at _OTHER_THREAD."""
    _read_kernel(p, _OTHER_THREAD, 4, task_slot, kernel["task_struct.pid"], "out")
    p.store_imm(4, R10, _ONE, 1)
    p.map_fd(R1, maps.traced)
    p.stack_pointer(R2, _OTHER_THREAD)
    p.stack_pointer(R3, _ONE)
    p.mov_imm(R4, 0)
    p.call(HELPER_UPDATE)


def _read_kernel(p: Program, to: int, size: int, base_slot: int, offset: int, fail: str) -> None:
    """R10+to = `size` bytes at (the kernel address in stack slot base_slot) + offset."""
    p.load(8, R3, R10, base_slot)
    p.add_imm(R3, offset)
    p.stack_pointer(R1, to)
    p.mov_imm(R2, size)
    p.call(HELPER_READ_KERNEL)
    p.jump_if(R0, "!=", 0, fail)


def syscall_program(arch: Architecture, maps: Maps, kernel: dict[str, int]) -> Program:
    """On every call's entry (raw sys_enter: the registers, the call's number): a traced thread's lookup
    goes out once, a relative one always with the names of the directory it starts from (`kernel`: the
    offsets of kernel_fields()); an exec it tries goes out too."""
    lookups = {name: shape for name, shape in SHAPES.items() if name in arch.numbers}
    execs = {name: shape for name, shape in EXECS.items() if name in arch.numbers}
    p = Program()
    p.mov(R6, R1)
    p.load(8, R7, R6, 8)  # the call's number
    for name in (*lookups, *execs):  # every other call leaves at once
        p.jump_if(R7, "==", arch.numbers[name], "wanted")
    p.jump("out")
    p.label("wanted")
    _traced_thread(p, maps)
    p.load(8, R1, R6, 0)
    p.store(8, R10, _REGS, R1)
    _read_kernel(p, _NATIVE, 8, _REGS, kernel[f"pt_regs.{arch.native_field}"], "out")
    p.load(8, R1, R10, _NATIVE)
    if arch.native_test == "==":
        p.and_imm(R1, 0xFFFF)  # x86's cs shares its 8 bytes with other bits (FRED)
        p.jump_if(R1, "!=", arch.native_value, "out")
    else:
        p.jump_if(R1, "&", arch.native_value, "out")
    for name in (*lookups, *execs):
        p.jump_if(R7, "==", arch.numbers[name], name)
    p.jump("out")
    for name, shape in lookups.items():
        p.label(name)
        _arguments(p, arch, kernel, shape, name)
        p.jump("lookup")
    for name, shape in execs.items():
        p.label(name)
        _arguments(p, arch, kernel, shape, name)
        p.jump("exec")
    p.label("lookup")
    _lookup(p, maps, kernel)
    p.jump("out")
    p.label("exec")
    _event(p, maps, EXEC_TRIED)
    _read_path(p)
    _send(p, maps, with_path=True)
    p.label("out")
    p.exit()
    return p


def _arguments(p: Program, arch: Architecture, kernel: dict[str, int], shape: Shape, call: str) -> None:
    """The call's path pointer and dirfd into their slots, whether it follows a final symlink into
    _FOLLOW; to "out" when its flags make it no lookup."""
    _read_kernel(p, _PATH_PTR, 8, _REGS, _argument_offset(arch, kernel, shape.path), "out")
    if shape.dirfd >= 0:
        _read_kernel(p, _DIRFD, 8, _REGS, _argument_offset(arch, kernel, shape.dirfd), "out")
    else:
        p.store_imm(8, R10, _DIRFD, _AT_FDCWD)
    p.store_imm(8, R10, _FOLLOW, int(shape.follows))
    if shape.flags < 0:
        return
    _read_kernel(p, _FLAGS, 8, _REGS, _argument_offset(arch, kernel, shape.flags), "out")
    p.load(8, R1, R10, _FLAGS)
    if shape.only_with:
        p.jump_if(R1, "&", shape.only_with, f"{call}_lookup")
        p.jump("out")
        p.label(f"{call}_lookup")
    if shape.not_with:
        p.jump_if(R1, "&", shape.not_with, "out")
    if shape.follows and shape.nofollow:
        p.and_imm(R1, shape.nofollow)
        p.jump_if(R1, "==", 0, f"{call}_follows")
        p.store_imm(8, R10, _FOLLOW, 0)
        p.label(f"{call}_follows")


def _lookup(p: Program, maps: Maps, kernel: dict[str, int]) -> None:
    p.count(maps.counters, _CALLS, "out")
    _event(p, maps, LOOKUP)
    p.load(8, R1, R10, _FOLLOW)
    p.store(4, R8, _KEY_AT, R1)
    _read_path(p)
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
    p.store_imm(4, R10, _ONE, 1)
    p.map_fd(R1, maps.seen)
    p.mov(R2, R8)
    p.add_imm(R2, _KEY_AT)
    p.stack_pointer(R3, _ONE)
    p.mov_imm(R4, NOEXIST)
    p.call(HELPER_UPDATE)
    p.jump_if(R0, "==", -errno.EEXIST, "out")  # another CPU was first (a full map sends it: the host dedupes)
    p.label("send")
    _send(p, maps, with_path=True)
    p.jump("out")
    p.label("relative")
    _walk_directory(p, kernel)
    _send(p, maps, with_path=False, size=EVENT_SIZE)


def _walk_directory(p: Program, kernel: dict[str, int]) -> None:
    """The names from the directory a relative path starts from (the dirfd in the event's first word, or
    the working directory) up to the process's root, into the event; its state says whether it got there
    (not across a mount inside the container, nor deeper than DIR_DEPTH: the host tries /proc then)."""
    _walk_begins(p, kernel)
    p.load(4, R1, R8, _OTHER)
    p.jump32_if(R1, "!=", _AT_FDCWD, "from_fd")
    _read_kernel(p, _START, 16, _FS, kernel["fs_struct.pwd"], "walked")
    p.jump("start")
    p.label("from_fd")
    _read_kernel(p, _FS, 8, _TASK, kernel["task_struct.files"], "walked")
    _read_kernel(p, _FS, 8, _FS, kernel["files_struct.fdt"], "walked")
    _read_kernel(p, _MAX_FDS, 4, _FS, kernel["fdtable.max_fds"], "walked")
    _read_kernel(p, _FS, 8, _FS, kernel["fdtable.fd"], "walked")
    p.load(4, R1, R8, _OTHER)
    p.load(4, R2, R10, _MAX_FDS)
    p.jump_if_reg(R1, ">=", R2, "walked")  # not an open fd (unsigned: a negative one too)
    p.shift_left(R1, 3)
    p.load(8, R2, R10, _FS)
    p.add(R1, R2)
    p.store(8, R10, _FS, R1)
    _read_kernel(p, _FS, 8, _FS, 0, "walked")  # the struct file
    p.load(8, R1, R10, _FS)
    p.jump_if(R1, "==", 0, "walked")
    _read_kernel(p, _START, 16, _FS, kernel["file.f_path"], "walked")
    p.label("start")
    _walk_up(p, kernel)


def _walk_begins(p: Program, kernel: dict[str, int]) -> None:
    """Before a walk: the event's directory unplaced until it gets there, R7 (where the next name goes) 0,
    the current task at _TASK and its root at _ROOT; to "walked" if unreadable."""
    p.store_imm(4, R8, _DIR_STATE, _DIR_UNPLACED)
    p.mov_imm(R7, 0)
    p.call(HELPER_CURRENT_TASK)
    p.store(8, R10, _TASK, R0)
    _read_kernel(p, _FS, 8, _TASK, kernel["task_struct.fs"], "walked")
    _read_kernel(p, _ROOT, 16, _FS, kernel["fs_struct.root"], "walked")


def _walk_up(p: Program, kernel: dict[str, int]) -> None:
    """The names from the struct path at _START up to _ROOT into the event, nearest first."""
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


def exec_done_program(maps: Maps, kernel: dict[str, int]) -> Program:
    """A traced thread's exec succeeded (raw sched_process_exec: the task, its old id, the binprm). The thread may have
    changed id (a thread other than the leader execs as the leader): traced under the new one too."""
    p = Program()
    p.mov(R6, R1)
    p.load(8, R1, R6, 8)
    p.store(4, R10, _THREAD, R1)
    p.map_lookup(maps.traced, _THREAD, "out")
    p.load(8, R1, R6, 0)
    p.store(8, R10, _TASK, R1)
    _trace_thread(p, maps, _TASK, kernel)
    _event(p, maps, EXEC_DONE)  # thread id: the old one
    p.load(4, R1, R10, _OTHER_THREAD)
    p.store(4, R8, _OTHER, R1)  # the new one
    # The file it runs (for a #! script, the interpreter), named as /proc/PID/exe would: the program is
    # often gone before the host could read that.
    _walk_begins(p, kernel)
    p.load(8, R1, R6, 16)
    p.store(8, R10, _FS, R1)
    _read_kernel(p, _FS, 8, _FS, kernel["linux_binprm.file"], "walked")
    _read_kernel(p, _START, 16, _FS, kernel["file.f_path"], "walked")
    _walk_up(p, kernel)
    _send(p, maps, with_path=False, size=EVENT_SIZE)
    p.label("out")
    p.exit()
    return p


def fork_program(maps: Maps, kernel: dict[str, int]) -> Program:
    """A thread forked by a traced thread is traced (raw sched_process_fork: parent and child tasks; it
    runs in the parent, before the child runs); the host hears of it, for the child's program."""
    p = Program()
    p.mov(R6, R1)
    _traced_thread(p, maps)
    p.load(8, R1, R6, 8)
    p.store(8, R10, _TASK, R1)
    _trace_thread(p, maps, _TASK, kernel)
    _event(p, maps, FORKED)
    p.load(4, R1, R10, _OTHER_THREAD)
    p.store(4, R8, _OTHER, R1)
    _send(p, maps, with_path=False)
    p.label("out")
    p.exit()
    return p


def exit_program(maps: Maps) -> Program:
    """A thread that exits is no longer traced: its id may soon name another, anywhere on the host."""
    p = Program()
    p.call(HELPER_PID_TGID)
    p.store(4, R10, _THREAD, R0)
    p.map_fd(R1, maps.traced)
    p.stack_pointer(R2, _THREAD)
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
        machine = os.uname().machine
        if machine not in ARCHITECTURES:
            raise BpfUnavailable(f"no eBPF lookup tracer for {machine}")
        arch = ARCHITECTURES[machine]
        try:
            kernel = field_offsets(kernel_fields(arch), cache)
        except BtfUnavailable as why:
            raise BpfUnavailable(str(why)) from why
        self._maps = Maps.create()
        self._fds += self._maps.fds()
        try:
            self._ring = RingBuffer(self._maps.ring, RING_SIZE)
        except OSError as why:
            raise BpfUnavailable(f"mapping the ring buffer: {why.strerror}") from why
        self._run(fork_program(self._maps, kernel), "sched_process_fork")
        self._run(exec_done_program(self._maps, kernel), "sched_process_exec")
        self._run(exit_program(self._maps), "sched_process_exit")
        self._run(syscall_program(arch, self._maps, kernel), "sys_enter")

    def _run(self, program: Program, tracepoint: str) -> None:
        program_fd = load(program, f"slim_{tracepoint}"[:15])
        self._fds.append(program_fd)
        self._fds.append(attach(program_fd, tracepoint))

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
                executable = _placed("", event, dir_length, dir_state).rstrip("/")
                tried = self._tried.pop(tid, "")
                self._programs[other] = executable or proc_link(other, "exe") or tried
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
        program = self._programs.get(tid) or proc_link(tid, "exe") or comm
        return LookupRecord(path=absolute, follow=follow, program=program)

    def calls(self) -> tuple[int, int]:
        """Lookup calls of traced threads, and those the ring had no room for, summed over the CPUs."""
        return per_cpu_sum(self._maps.counters, _CALLS), per_cpu_sum(self._maps.counters, _LOST)

    def close(self) -> None:
        """Detach and free everything."""
        if getattr(self, "_ring", None) is not None:
            self._ring.close()
            self._ring = None
        while self._fds:  # each attachment before its program (appended after it)
            os.close(self._fds.pop())  # taken off first: never closed twice (the number may be another's by then)


def _placed(path: str, event: bytes, dir_length: int, dir_state: int) -> str:
    """A relative path made absolute with the directory the kernel side walked, if it got to the root."""
    if dir_state != _DIR_PLACED:
        return path
    names = os.fsdecode(event[_DIR_AT:_DIR_AT + dir_length]).split("\0")[:-1]
    return "/" + "/".join([*reversed(names), path])


def _absolute(path: str, tid: int, dirfd: int) -> str | None:
    """The path as the container sees it; a relative one against the caller's directory, read now (the
    caller is not stopped: had it exited or moved since, the lookup cannot be placed: None)."""
    if path.startswith("/"):
        return path
    base = proc_link(tid, "cwd" if dirfd == _AT_FDCWD else f"fd/{dirfd}")
    if not base.startswith("/") or base.endswith(" (deleted)"):
        return None
    return base.rstrip("/") + "/" + path
