"""The eBPF binding: the assembler on plain data, and the kernel's verdict on what it assembles."""
from __future__ import annotations

import os
import struct

import pytest

from slim.adapters.bpf import R0, R1, R2, BpfUnavailable, Program, load

INSN = struct.Struct("<BBhi")


def instructions(program: Program) -> list[tuple[int, int, int, int]]:
    code = program.code()
    return [INSN.unpack_from(code, at) for at in range(0, len(code), 8)]


def test_jumps_count_a_map_reference_as_the_two_instructions_it_is():
    p = Program()
    p.jump_if(R1, "==", 0, "end")  # over the 16-byte map reference and the mov
    p.map_fd(R1, 7)
    p.mov_imm(R0, 1)
    p.label("end")
    p.exit()
    code = instructions(p)
    assert len(code) == 6
    assert code[0] == (0x15, R1, 3, 0)
    assert code[1] == (0x18, 1 << 4 | R1, 0, 7) and code[2] == (0, 0, 0, 0)


def test_a_jump_back_has_a_negative_offset_and_a_register_comparison_names_both_registers():
    p = Program()
    p.label("again")
    p.add_imm(R1, 1)
    p.jump_if_reg(R1, "<", R2, "again")
    p.exit()
    assert instructions(p)[1] == (0x05 | 0xa0 | 0x08, R2 << 4 | R1, -2, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="loading eBPF needs root")
def test_a_program_the_verifier_refuses_is_unavailable_with_its_reason():
    p = Program()
    p.mov(R0, R2)  # R2 was never set
    p.exit()
    with pytest.raises(BpfUnavailable, match="R2 !read_ok"):
        load(p, "refused")
