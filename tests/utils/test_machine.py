"""CPU description and native-bf16 detection from /proc/cpuinfo text."""

from __future__ import annotations

from voiceconv.utils.machine import has_native_bf16, parse_cpuinfo

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16
"""
EPYC_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes bf16 i8mm
"""


def test_parse_and_detect() -> None:
    name, flags = parse_cpuinfo(XEON)
    assert name == "Intel(R) Xeon(R) Processor" and has_native_bf16(flags)
    name, flags = parse_cpuinfo(EPYC_AVX2)
    assert name == "AMD EPYC 7B12" and "avx2" in flags and not has_native_bf16(flags)
    assert has_native_bf16(parse_cpuinfo(ARM)[1])
    assert parse_cpuinfo("") == ("", frozenset())
