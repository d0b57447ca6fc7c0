"""The x86 CPU kinds an int8 artifact is built for (``bertc compile --cpu``).

onnxruntime multiplies a u8 activation by an s8 kernel with whatever its CPU has:

* **avx2** (no VNNI): ``vpmaddubsw`` adds *pairs* of u8 x s8 products into int16,
  which saturates once 255 * (|w1| + |w2|) > 32767.  Full 8-bit kernels
  (|q| <= 127) can hit that; 7-bit ones (|q| <= 63: 255 * 126 = 32130) never do.
* **vnni** (AVX-512 VNNI or AVX-VNNI) and **amx** (AMX int8 tiles): ``vpdpbusd`` /
  ``tdpbusd`` accumulate every product in int32, so u8 x s8 is exact for any int8
  kernel.  onnxruntime picks the AMX kernel by itself where the CPU has it; the
  artifact is the same as for vnni.

So the choice decides how an ONNX artifact stores int8 kernels; the IR, and so the
accuracy, is the same whatever it says:

==========  ============================================  ===================================
``--cpu``   8-bit kernels (quant_int8/quant_full default)  exact on
==========  ============================================  ===================================
portable    shifted into u8: u8 x u8 kernels (slower)      every x86 CPU (the default)
avx2        the same as portable                           every x86 CPU
vnni, amx   s8: u8 x s8 kernels (the fast path)            CPUs with AVX-512 VNNI, AVX-VNNI, AMX
native      vnni or amx if this CPU has them, else avx2    what it resolved to
==========  ============================================  ===================================

7-bit kernels (``weight_bits=7``, |q| <= 63) are stored s8 for every kind: u8 x s8 is
then exact everywhere.  On a VNNI or AMX CPU ``--cpu native`` gets 8-bit accuracy at
7-bit speed; ``bertc run``/``bench`` warn when such an artifact runs on a CPU without
them.  TFLite is not affected: LiteRT's int8 kernels are exact on every CPU.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

KINDS = ("portable", "native", "avx2", "vnni", "amx")
# The kinds whose u8 x s8 products never saturate: an 8-bit s8 kernel is exact there.
_INT32_DOT = ("vnni", "amx")
METADATA_KEY = "bertc.cpu"  # ONNX metadata_props: the kind an artifact's int8 kernels were stored for


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        from .diagnostics import BertcError, did_you_mean

        raise BertcError(f"--cpu {kind}: unknown CPU kind.{did_you_mean(kind, list(KINDS))}",
                         "Use portable (exact on every x86 CPU, the default), native (this CPU), "
                         "avx2, vnni or amx.")


@lru_cache(maxsize=1)
def host_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo; empty where that is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def host_kind(flags: frozenset[str] | None = None) -> str:
    """This CPU as one of avx2, vnni, amx, or "other" (not x86, or flags unknown)."""
    flags = host_flags() if flags is None else flags
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return "other"


def resolve(kind: str) -> str:
    """The concrete kind an artifact is built for: ``native`` becomes this CPU's kind
    (a CPU without AVX2 or of another architecture builds the portable form)."""
    check_kind(kind)
    if kind != "native":
        return kind
    here = host_kind()
    return here if here in ("avx2", "vnni", "amx") else "portable"


def u8s8_exact(kind: str) -> bool:
    """Whether onnxruntime's u8 x s8 kernels are exact for full 8-bit kernels on ``kind``."""
    return resolve(kind) in _INT32_DOT


def mismatch_warning(built_for: str | None, flags: frozenset[str] | None = None) -> str | None:
    """A warning when an artifact built for ``built_for`` runs on a CPU where its int8 kernels are
    not exact (an 8-bit s8 kernel on a CPU without VNNI/AMX saturates), else None."""
    if built_for not in _INT32_DOT:
        return None
    here = host_kind(flags)
    if here in _INT32_DOT:
        return None
    cpu = platform.processor() or platform.machine()
    return (f"this artifact was built with --cpu {built_for}: its 8-bit int8 kernels are exact only on CPUs "
            f"with AVX-512 VNNI, AVX-VNNI or AMX, and this CPU ({cpu}, {here}) has none, so some products "
            "saturate and results may differ from the verified ones. Recompile with --cpu portable for this CPU.")
