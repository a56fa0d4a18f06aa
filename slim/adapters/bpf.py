"""Our own eBPF binding: the kernel's bpf() call through ctypes, an assembler for the few instructions
slimtrace's programs use, maps, raw tracepoints, and the consumer's side of a ring buffer.

No compiler, headers or BTF-based relocation: the programs are assembled at run time with the offsets
they need (slim/adapters/bpf_lookups.py). Whatever the kernel refuses becomes BpfUnavailable here.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
from pathlib import Path

# <linux/bpf.h>, only what is used here.
_BPF_MAP_CREATE, _BPF_MAP_LOOKUP_ELEM, _BPF_MAP_UPDATE_ELEM, _BPF_PROG_LOAD, _BPF_RAW_TRACEPOINT_OPEN = 0, 1, 2, 5, 17
MAP_HASH, MAP_PERCPU_ARRAY, MAP_RINGBUF = 1, 6, 27
NO_PREALLOC = 1
_PROG_RAW_TRACEPOINT = 17
HELPER_LOOKUP, HELPER_UPDATE, HELPER_DELETE = 1, 2, 3
HELPER_PID_TGID, HELPER_COMM, HELPER_CURRENT_TASK = 14, 16, 35
HELPER_READ_KERNEL, HELPER_READ_USER_STR, HELPER_READ_KERNEL_STR, HELPER_RINGBUF_OUTPUT = 113, 114, 115, 130
NOEXIST = 1
_RINGBUF_BUSY, _RINGBUF_DISCARD, _RINGBUF_HEADER = 1 << 31, 1 << 30, 8
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}


class BpfUnavailable(Exception):
    """The host does not let this process load or attach eBPF programs (no privilege, an old kernel)."""


_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _bpf(command: int, attr: bytes) -> int:
    machine = os.uname().machine
    if machine not in _BPF_SYSCALL:
        raise BpfUnavailable(f"no eBPF binding for {machine}")
    buffer = ctypes.create_string_buffer(attr, len(attr))
    try:
        return _syscall(_BPF_SYSCALL[machine], ctypes.c_int(command), buffer, ctypes.c_uint(len(attr)))
    except OSError as why:
        raise BpfUnavailable(f"bpf: {why.strerror}") from why


# ---------------------------------------------------------------- an assembler for the few instructions used

R0, R1, R2, R3, R4, R6, R7, R8, R9, R10 = 0, 1, 2, 3, 4, 6, 7, 8, 9, 10
_INSN = struct.Struct("<BBhi")
_SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
_JUMPS = {"==": 0x10, "!=": 0x50, ">": 0x20, ">=": 0x30, "&": 0x40, "<": 0xa0, "s<=": 0xd0}


def _width(slot: tuple) -> int:
    """Instructions a slot takes: a label none, a map reference two, anything else one."""
    if slot[0] == "label":
        return 0
    return len(slot[1]) // _INSN.size if slot[0] == "insn" else 1


class Program:
    """eBPF instructions with named jump targets, resolved by `code()`."""

    def __init__(self) -> None:
        self._slots: list[tuple] = []  # ("insn", bytes) | ("jump", op, reg, imm, label) | ("label", name)

    def code(self) -> bytes:
        where, count = {}, 0
        for slot in self._slots:
            if slot[0] == "label":
                where[slot[1]] = count
            count += _width(slot)
        out, count = [], 0
        for slot in self._slots:
            if slot[0] == "insn":
                out.append(slot[1])
            elif slot[0] == "jump":
                _, code, reg, imm, label = slot
                out.append(_INSN.pack(code, reg, where[label] - count - 1, imm))
            count += _width(slot)
        return b"".join(out)

    def _insn(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self._slots.append(("insn", _INSN.pack(code, src << 4 | dst, off, imm)))

    def label(self, name: str) -> None:
        self._slots.append(("label", name))

    def mov(self, dst: int, src: int) -> None:
        self._insn(0xbf, dst, src)

    def mov_imm(self, dst: int, imm: int) -> None:
        self._insn(0xb7, dst, imm=imm)

    def add_imm(self, dst: int, imm: int) -> None:
        self._insn(0x07, dst, imm=imm)

    def load(self, size: int, dst: int, src: int, off: int) -> None:
        self._insn(0x61 | _SIZES[size], dst, src, off)

    def store(self, size: int, dst: int, off: int, src: int) -> None:
        self._insn(0x63 | _SIZES[size], dst, src, off)

    def store_imm(self, size: int, dst: int, off: int, imm: int) -> None:
        self._insn(0x62 | _SIZES[size], dst, off=off, imm=imm)

    def jump_if(self, reg: int, op: str, imm: int, label: str) -> None:
        self._slots.append(("jump", 0x05 | _JUMPS[op], reg, imm, label))

    def jump32_if(self, reg: int, op: str, imm: int, label: str) -> None:
        """As jump_if on the low 32 bits (an int argument's upper half is undefined)."""
        self._slots.append(("jump", 0x06 | _JUMPS[op], reg, imm, label))

    def jump_if_reg(self, reg: int, op: str, other: int, label: str) -> None:
        self._slots.append(("jump", 0x05 | _JUMPS[op] | 0x08, other << 4 | reg, 0, label))

    def add(self, dst: int, src: int) -> None:
        self._insn(0x0f, dst, src)

    def and_imm(self, dst: int, imm: int) -> None:
        self._insn(0x57, dst, imm=imm)

    def shift_left(self, dst: int, imm: int) -> None:
        self._insn(0x67, dst, imm=imm)

    def jump(self, label: str) -> None:
        self._slots.append(("jump", 0x05, 0, 0, label))

    def map_fd(self, dst: int, fd: int) -> None:
        """dst = the map (a 16-byte instruction the kernel rewrites to the map's address)."""
        self._slots.append(("insn", _INSN.pack(0x18, 1 << 4 | dst, 0, fd) + _INSN.pack(0, 0, 0, 0)))

    def call(self, helper: int) -> None:
        self._insn(0x85, imm=helper)

    def exit(self) -> None:
        self.mov_imm(R0, 0)
        self._insn(0x95)

    def stack_pointer(self, dst: int, off: int) -> None:
        """dst = the address `off` bytes into the stack (off < 0)."""
        self.mov(dst, R10)
        self.add_imm(dst, off)

    def map_lookup(self, fd: int, key_off: int, missing: str) -> None:
        """R0 = the map's value for the key on the stack at key_off; jumps to `missing` if there is none."""
        self.map_fd(R1, fd)
        self.stack_pointer(R2, key_off)
        self.call(HELPER_LOOKUP)
        self.jump_if(R0, "==", 0, missing)

    def count(self, counters: int, which: int, done: str) -> None:
        """Adds one to this CPU's counter `which` (its key goes in the stack's 4 bytes at -8)."""
        self.store_imm(4, R10, -8, which)
        self.map_lookup(counters, -8, done)
        self.load(8, R1, R0, 0)
        self.add_imm(R1, 1)
        self.store(8, R0, 0, R1)


# ---------------------------------------------------------------- maps, programs and the tracepoints they attach to

def create_map(kind: int, key_size: int, value_size: int, entries: int, flags: int = 0) -> int:
    return _bpf(_BPF_MAP_CREATE, struct.pack("=5I", kind, key_size, value_size, entries, flags) + bytes(48))


def load(program: Program, name: str) -> int:
    try:
        return _load_logged(program, name, 0)
    except BpfUnavailable:  # again, for the verifier's reason (its log of a refused program is long)
        return _load_logged(program, name, 1)


def _load_logged(program: Program, name: str, log_level: int) -> int:
    code = program.code()
    instructions = ctypes.create_string_buffer(code, len(code))
    log = ctypes.create_string_buffer((16 << 20) if log_level else 0)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack(
        "=IIQQIIQII16s", _PROG_RAW_TRACEPOINT, len(code) // 8, ctypes.addressof(instructions),
        ctypes.addressof(license_), log_level, len(log), ctypes.addressof(log) if log_level else 0, 0, 0,
        name.encode()[:15],
    )
    try:
        return _bpf(_BPF_PROG_LOAD, attr + bytes(64))
    except BpfUnavailable as why:
        verifier = log.value.decode(errors="replace").strip().splitlines()[-2:]
        raise BpfUnavailable(f"{why} ({' / '.join(verifier) or 'no verifier log'})") from why


def attach(program_fd: int, tracepoint: str) -> int:
    """Runs the program on every hit of the raw tracepoint (its arguments as the kernel passes them), on
    all CPUs; returns the fd whose closing detaches it (at once: no grace period to wait out, unlike a
    perf event's)."""
    name = ctypes.create_string_buffer(tracepoint.encode())
    try:
        return _bpf(_BPF_RAW_TRACEPOINT_OPEN, struct.pack("=QI4x", ctypes.addressof(name), program_fd) + bytes(48))
    except BpfUnavailable as why:
        raise BpfUnavailable(f"attaching to {tracepoint}: {why}") from why


def map_update(fd: int, key: ctypes._CData, value: ctypes._CData) -> None:
    _map_element(_BPF_MAP_UPDATE_ELEM, fd, key, value)


def per_cpu_sum(fd: int, key: int) -> int:
    """The sum over the CPUs of a per-CPU array's u64 at `key`."""
    values = (ctypes.c_uint64 * _possible_cpus())()
    _map_element(_BPF_MAP_LOOKUP_ELEM, fd, ctypes.c_uint32(key), values)
    return sum(values)


def _map_element(command: int, fd: int, key: ctypes._CData, value: ctypes._CData) -> None:
    """A map element command: map fd, key and value addresses (the value read or written), no flags."""
    _bpf(command, struct.pack("=I4xQQQ", fd, ctypes.addressof(key), ctypes.addressof(value), 0))


def _possible_cpus() -> int:
    """A per-CPU map's lookup writes one value per possible CPU (not only online ones)."""
    last = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        last = max(last, int(part.split("-")[-1]))
    return last + 1


class RingBuffer:
    """The consumer's side of a BPF ring buffer map, mapped into this process."""

    def __init__(self, fd: int, size: int):
        page = mmap.PAGESIZE
        self._page, self._mask = page, size - 1
        self._consumer = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        # The data pages are mapped twice in a row, so a record that wraps reads as one slice.
        self._producer = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)

    def records(self) -> list[bytes]:
        """Every record committed since the last call."""
        consumer, = struct.unpack_from("=Q", self._consumer, 0)
        producer, = struct.unpack_from("=Q", self._producer, 0)
        records = []
        while consumer < producer:
            at = self._page + (consumer & self._mask)
            length, = struct.unpack_from("=I", self._producer, at)
            if length & _RINGBUF_BUSY:
                break
            size = length & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            if not length & _RINGBUF_DISCARD:
                records.append(self._producer[at + _RINGBUF_HEADER:at + _RINGBUF_HEADER + size])
            consumer += (size + _RINGBUF_HEADER + 7) & ~7
            struct.pack_into("=Q", self._consumer, 0, consumer)
        return records

    def close(self) -> None:
        self._consumer.close()
        self._producer.close()
