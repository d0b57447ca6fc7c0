"""``bertc compile --cpu``: how the ONNX target stores int8 kernels for each x86 CPU kind,
and that every form it chooses is exact where it claims to be.

onnxruntime's u8 x s8 kernels on AVX2 (no VNNI) add pairs of products into int16
(``vpmaddubsw``), which saturates for 8-bit kernels; VNNI and AMX accumulate in int32.
The host CPU of a test run is one kind only, so exactness on the others is shown two
ways: onnxruntime against the reference interpreter on this CPU, and an int32 numpy
model of the AVX2 instruction over the kernels the lowering actually stored.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from bertc import cpu
from bertc.cli import main
from bertc.diagnostics import BertcError
from bertc.ir import Graph, TensorType
from bertc.ir.interpreter import run_graph
from bertc.passes.quant_int8 import ACT_SCHEMES
from bertc.runtime.session import open_session
from bertc.targets.onnx import TARGET as ONNX

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
VNNI = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
AMX = VNNI | {"amx_tile", "amx_int8"}
HOST_HAS_INT32_DOT = cpu.host_kind() in ("vnni", "amx")


def qmatmul_graph(kmax: int, seed: int = 3) -> tuple[Graph, dict]:
    """One qmatmul with a kernel of +-kmax (8 columns all +kmax: every pair sum reaches
    2 * 255 * kmax) and activations that quantize to u8 0 and 255: the worst case for int16 pairs."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("n", 64)))
    wq = np.where(rng.random((64, 32)) < 0.5, kmax, -kmax).astype(np.int8)
    wq[:, :8] = kmax
    ops = [g.const(wq, "kernel_int8"), g.const(np.full(32, 0.01, np.float32), "scale"),
           g.const(np.zeros(32, np.int8), "zero_point")]
    g.outputs["y"] = g.add("qmatmul", [x, *ops], {"axis": 1, **ACT_SCHEMES["u8_tensor"]}).result
    feeds = {"x": np.where(rng.random((6, 64)) < 0.8, 1.0, -1.0).astype(np.float32)}
    return g, feeds


def stored_kernel(model: onnx.ModelProto) -> np.ndarray:
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    (node,) = [n for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    return inits[node.input[1]]


def avx2_u8s8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int32 model of onnxruntime's AVX2 u8 x s8 GEMM: K packed in groups of 4, ``vpmaddubsw``
    adds products (k, k+1) of each group into int16 with saturation, ``vpmaddwd`` then sums the
    int16 pairs into int32 exactly."""
    a, b = a.astype(np.int32), b.astype(np.int32)
    k = a.shape[1] + (-a.shape[1]) % 4
    a = np.pad(a, ((0, 0), (0, k - a.shape[1])))
    b = np.pad(b, ((0, k - b.shape[0]), (0, 0)))
    pairs = a[:, 0::2, None] * b[None, 0::2, :] + a[:, 1::2, None] * b[None, 1::2, :]
    return np.clip(pairs, -32768, 32767).sum(axis=1)


def test_host_kind_and_resolve():
    assert [cpu.host_kind(f) for f in (AVX2, VNNI, AMX, frozenset())] == ["avx2", "vnni", "amx", "other"]
    assert cpu.host_kind(AVX2 | {"avx_vnni"}) == "vnni"  # AVX-VNNI without AVX-512
    assert cpu.host_kind(AVX2 | {"avx512f", "avx512bw"}) == "avx2"  # AVX-512 without VNNI pairs in int16 too
    assert cpu.resolve("native") == (cpu.host_kind() if cpu.host_kind() != "other" else "portable")
    assert [cpu.u8s8_exact(k) for k in ("portable", "avx2", "vnni", "amx")] == [False, False, True, True]
    with pytest.raises(BertcError, match="--cpu avx9: unknown CPU kind.*avx2"):
        cpu.resolve("avx9")


def test_the_int32_model_of_avx2_saturates_on_8_bit_kernels_only():
    """The model has teeth: full-range u8 against an 8-bit kernel loses thousands, a 7-bit one nothing."""
    a = np.full((2, 64), 255, np.uint8)
    for kmax, exact in ((127, False), (65, False), (64, True), (63, True)):
        b = np.full((64, 4), kmax, np.int8)
        want = a.astype(np.int32) @ b.astype(np.int32)
        assert np.array_equal(avx2_u8s8(a, b), want) == exact, kmax


@pytest.mark.parametrize("kind, kmax, stored", [
    ("portable", 127, np.uint8), ("avx2", 127, np.uint8), ("vnni", 127, np.int8), ("amx", 127, np.int8),
    ("portable", 63, np.int8), ("vnni", 63, np.int8)])
def test_kernel_storage_per_cpu_kind(kind, kmax, stored):
    g, _ = qmatmul_graph(kmax)
    model = onnx.load_from_string(ONNX.for_cpu(kind).lower(g))
    assert stored_kernel(model).dtype == stored
    assert {p.key: p.value for p in model.metadata_props}[cpu.METADATA_KEY] == kind


@pytest.mark.parametrize("kind", ["portable", "avx2"])
def test_portable_kernels_are_exact_in_avx2_arithmetic(kind):
    """Every s8 kernel a portable artifact stores gives the exact int32 product in the AVX2 model at the
    activations' extremes (0 and 255); 8-bit kernels are stored u8, whose u8 x u8 kernels widen to int16
    before multiplying (vpmaddwd, int32 sums): exact by construction."""
    a = np.random.default_rng(0).choice(np.array([0, 255], np.uint8), (16, 64))
    for kmax in (63, 64, 100, 127):
        g, _ = qmatmul_graph(kmax)
        b = stored_kernel(onnx.load_from_string(ONNX.for_cpu(kind).lower(g)))
        if b.dtype == np.int8:
            assert np.array_equal(avx2_u8s8(a, b), a.astype(np.int32) @ b.astype(np.int32)), kmax
        else:
            assert b.dtype == np.uint8 and kmax > 64


@pytest.mark.parametrize("kind", ["portable", "vnni"])
@pytest.mark.parametrize("kmax", [127, 63])
def test_onnxruntime_matches_the_reference_bit_for_bit(kind, kmax):
    """Full-range activations and kernels on this CPU: the form stored for ``kind`` computes the
    reference kernel's integers exactly (an s8 8-bit kernel only where the CPU has VNNI or AMX)."""
    if kind == "vnni" and not HOST_HAS_INT32_DOT:
        pytest.skip(f"this CPU ({cpu.host_kind()}) has no VNNI or AMX: an 8-bit s8 kernel is not exact here")
    g, feeds = qmatmul_graph(kmax)
    want = run_graph(g, feeds)["y"]
    got = open_session(ONNX.for_cpu(kind).lower(g), kind="onnx").run(feeds)["y"]
    np.testing.assert_array_equal(got, want)


def test_fp32_artifacts_name_no_cpu():
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("n", 4)))
    g.outputs["y"] = g.add("matmul", [x, g.const(np.eye(4, dtype=np.float32), "w")]).result
    model = onnx.load_from_string(ONNX.for_cpu("vnni").lower(g))
    assert cpu.METADATA_KEY not in {p.key for p in model.metadata_props}


def test_mismatch_warning_names_the_cpu_kind_and_the_fix():
    assert cpu.mismatch_warning("portable", AVX2) is None
    assert cpu.mismatch_warning("vnni", VNNI) is None and cpu.mismatch_warning("amx", VNNI) is None
    msg = cpu.mismatch_warning("amx", AVX2)
    assert "--cpu amx" in msg and "avx2" in msg and "--cpu portable" in msg


@pytest.mark.slow
def test_compile_cpu_option(tf_bert_dir, tmp_path, capsys):
    """--cpu on the command line: recorded in report.json and the artifact, refused when unknown."""
    import json

    out = tmp_path / "native"
    assert main(["compile", str(tf_bert_dir), "-o", str(out), "--target", "onnx", "--passes", "quant_int8",
                 "--cpu", "native"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["cpu"] == {"built_for": cpu.resolve("native"), "asked": "native", "this_cpu": cpu.host_kind(),
                             "note": None}
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta[cpu.METADATA_KEY] == cpu.resolve("native")
    portable = tmp_path / "portable"
    assert main(["compile", str(tf_bert_dir), "-o", str(portable), "--target", "onnx", "--passes", "quant_int8"]) == 0
    note = json.loads((portable / "report.json").read_text())["cpu"]["note"]
    if HOST_HAS_INT32_DOT:  # the summary says how to use this CPU's VNNI/AMX kernels
        assert note.startswith("14 int8 matmul(s)") and "--cpu native" in note
        assert "note: 14 int8 matmul(s)" in capsys.readouterr().err
    else:
        assert note is None
    capsys.readouterr()
    assert main(["compile", str(tf_bert_dir), "-o", str(tmp_path / "bad"), "--cpu", "avx9"]) == 2
    err = capsys.readouterr().err
    assert "--cpu avx9: unknown CPU kind" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
