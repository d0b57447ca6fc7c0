"""Rewrite scatter_nd, scatter_nd_update and scatter_nd_add where a target lacks the form.

TF's three scatters arrive as three IR ops (duplicate indices add up in the
first and third; in the second the last one wins).  ONNX runs all three
(ScatterND with reduction none/add).  TFLite has SCATTER_ND only, with i32
indices.  Each op a listed target cannot run is rewritten; an op every listed
target runs is kept (see "Measured" below).  Indices are flattened to [N, K]
and updates to [N, *slice] first; ``lead = data.shape[:K]`` is the grid the K
index columns address (from shape() at run time when symbolic).

scatter_nd with i64 indices (TFLite)                               "cast" form

    scatter_nd(idx, upd, shape) -> scatter_nd(cast(idx, i32), upd, shape)

    Exact for every valid index: a valid index is below its dim, and TFLite
    dims are int32 (TF rejects out-of-range and negative indices).

scatter_nd_update(data, idx, upd) (TFLite)                     "radix" / "select"

    Find each position's *writer* -- the last row n that lands on it, as the
    IR's last-one-wins rule says -- then move every output row with one
    gather from data's rows stacked on the update rows, so every value (NaN,
    inf, -0.0) arrives bit for bit; selects only ever see integers
    (onnxruntime's Where turns a -0.0 from its first branch into +0.0):

        w[p] = max{n + 1 : row n lands on p}, or 0 where no row does
        out  = gather(concat(data rows [P, ...], upd rows [N, ...]),
                      where(w > 0, P - 1 + w, p))       # then reshaped to data's shape

    "radix" computes the max with scatter-adds only (SCATTER_ND sums), one bit
    of w per round, high to low, over flat positions f[n] (row-major in lead):

        best = 0;  id[n] = n + 1 < 2^B
        for b = B-1 … 0:
            has[n] = best[f[n]] + 2^b <= id[n] < best[f[n]] + 2^(b+1)
            best  += 2^b · min(scatter_nd(f, has, [P]), 1)

    Invariant: best[p] holds the bits above b of the largest id at p, so a row
    with those bits and bit b set exists exactly when the max has bit b.
    O(B·(N + P)) work; B = bits of N when the row count N is static, else of
    ``max_rows`` (default 2^20: exact for up to a million rows).

    "select" computes the max without any scatter, on a static grid of P
    positions:  w[p] = max_n where(f[n] == p, n + 1, 0).  O(N·P) compares and
    fewer ops: picked when the grid is static and has at most
    ``select_max_grid`` positions (default 64, where N·P <= 64·N stays below
    radix's B·(N + P)); "radix" otherwise -- BERT's case, a few rows per
    [batch, seq] grid, and also tf.where(mask)-style updates of every position.

scatter_nd_add(data, idx, upd) (TFLite)                                  "add"

        s   = scatter_nd(idx, upd, shape(data))        # duplicates add up, as in TF
        hit = scatter_nd(idx, ones, lead) > 0
        out = where(hit, data + s, data)

    Exact for integers.  For floats, exact where each position is hit once,
    except that data = -0.0 plus update -0.0 gives +0.0 (s starts from +0.0);
    positions hit several times sum their updates first, then add data:
    (d + u1) + u2 becomes d + (u1 + u2), a rounding difference.  Untouched
    positions keep data bit for bit.

Not used: a one-hot matmul (onehot(f, P)ᵀ @ upd) is not exact -- 0 · inf is NaN
and NaN updates leak into every row -- and costs P·N·D multiply-adds.

Measured (benchmarks/legalization.py, onnxruntime 1.32 and LiteRT 2.3 on CPU,
one thread, medians in ms; "native" where the target has the op):

                                           ORT native  ORT rewrite  LiteRT rewrite
    update f32 [8,128,768] <- 8 rows, radix      0.083        0.45        0.75
      same on a static grid, select                           0.35        0.72
    update i32 [8,128] <- 8 rows, radix          0.009        0.10        0.064
      same on a static grid, select                           0.059       0.027
    update i32 [8,128] <- 1024 rows, radix       0.016        0.37        0.25
      same on a static grid, select                           1.49        0.63
    add f32 [8,128,768] <- 8 rows, add           0.081        0.73        0.49
    scatter_nd f32 [1024,768] <- 8 rows: native 0.088 (ORT) / 0.107 (LiteRT),
      one-hot matmul 0.159 / 0.220

The native ops are 2-15x faster than any rewrite (they copy data once and
write N rows; an exact rewrite must also move all of data through a gather),
so an op every listed target runs is kept native; ``force=true`` rewrites it
anyway (for these measurements).  Between the rewrites, "select" wins while
N·P is small and "radix" once rows are many (2.6-4x at 1024 rows), as chosen.

Which targets count: ``targets`` (default both).  bertc compile --target all
lowers one graph to both, so the rewrite must run on both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from bertc.diagnostics import BertcError
from bertc.ir import Graph, Op, Value
from bertc.ir.emitter import INT_MAX, Emitter
from bertc.ir.types import dim_prod, is_static
from bertc.legalize import unsupported_on
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ pieces
def _scatter(emit: Emitter, idx: Value, upd: Value, lead: Value | list[int], hint: str) -> Value:
    if isinstance(lead, list):
        return emit("scatter_nd", [idx, upd], {"shape": lead}, hint)
    return emit("scatter_nd", [idx, upd, lead], hint=hint)


def _flat_rows(emit: Emitter, v: Value, lead_rank: int, hint: str) -> Value:
    """Merge the first ``lead_rank`` dims of v into one: [..., *tail] -> [N, *tail]."""
    if lead_rank == 1:
        return v
    if lead_rank == 0:
        return emit("unsqueeze", [v], {"axes": [0]}, hint)
    tail = list(v.shape[lead_rank:])
    if all(is_static(d) for d in tail):
        return emit("reshape", [v], {"shape": [-1, *map(int, tail)]}, hint)
    target = emit("concat", [emit.const([-1], "i32", "minus_one"), emit.dims(v, lead_rank)], {"axis": 0},
                  f"{hint}_shape")
    return emit("reshape", [v, target], hint=hint)


def _indices(emit: Emitter, idx: Value) -> Value:
    """Indices as [N, K] i32 (exact: see the "cast" form)."""
    if idx.dtype != "i32":
        idx = emit("cast", [idx], {"to": "i32"}, "indices_i32")
    return _flat_rows(emit, idx, idx.type.rank - 1, "indices")


def _writer_ids(emit: Emitter, rows: Value) -> Value:
    """n + 1 for each row n in range(N), N = rows.shape[0] (0 stays free for "no writer")."""
    n = emit("range", [emit.const(0, "i32", "zero"), emit.length(rows), emit.const(1, "i32", "one")], hint="rows")
    return emit("add", [n, emit.const(1, "i32", "one")], hint="writer")


def _flat_positions(emit: Emitter, idx: Value, lead: Value | list[int]) -> Value:
    """f[n] = row-major position of idx[n] in the grid ``lead`` (Horner over the K columns)."""
    k = int(idx.shape[-1])

    def column(j: int) -> Value:
        return emit("gather", [idx, emit.const(j, "i32", f"col_{j}")], {"axis": 1}, f"col_{j}")

    def dim(j: int) -> Value:
        if isinstance(lead, list):
            return emit.const(lead[j], "i32", f"dim_{j}")
        return emit("gather", [lead, emit.const(j, "i32", f"col_{j}")], {"axis": 0}, f"dim_{j}")

    f = column(0)
    for j in range(1, k):
        f = emit("add", [emit("mul", [f, dim(j)], hint=f"scaled_{j}"), column(j)], hint=f"flat_{j}")
    return f


def _grid_size(emit: Emitter, lead: Value | list[int]) -> Value | list[int]:
    """[P], the number of positions in the grid ``lead``: a list when static, else an i32 vector."""
    if isinstance(lead, list):
        return [int(np.prod(lead, dtype=np.int64))]
    return emit("reduce_prod", [lead], {"axes": [0], "keepdims": True}, "grid_size")


def _radix_writers(emit: Emitter, idx: Value, lead: Value | list[int], max_rows: int) -> Value:
    """w[p] = the largest n + 1 among rows landing on flat position p (0 if none), one bit per round."""
    n_rows = idx.shape[0]
    bits = max(1, int(n_rows if is_static(n_rows) else max_rows).bit_length())  # ids <= N < 2^bits
    ids = _writer_ids(emit, idx)
    flat = _flat_positions(emit, idx, lead)
    at = emit("unsqueeze", [flat], {"axes": [1]}, "flat_index")
    grid = _grid_size(emit, lead)
    one = emit.const(1, "i32", "one")
    best = None
    for b in reversed(range(bits)):
        low = emit.const(1 << b, "i32", f"bit_{b}")
        if best is None:  # nothing known yet: a row has bit b set (ids < 2^bits)
            has = emit("greater_equal", [ids, low], hint=f"has_{b}")
        else:  # the row agrees with best above bit b and has bit b set
            prefix = emit("gather", [best, flat], {"axis": 0}, f"prefix_{b}")
            has = emit("logical_and", [
                emit("greater_equal", [ids, emit("add", [prefix, low], hint=f"low_{b}")], hint=f"ge_{b}"),
                emit("less", [ids, emit("add", [prefix, emit.const(2 << b, "i32", f"bit_{b + 1}")],
                                        hint=f"high_{b}")], hint=f"lt_{b}")], hint=f"has_{b}")
        count = _scatter(emit, at, emit("cast", [has], {"to": "i32"}, f"has_{b}_i32"), grid, f"count_{b}")
        step = emit("mul", [emit("minimum", [count, one], hint=f"any_{b}"), low], hint=f"step_{b}")
        best = step if best is None else emit("add", [best, step], hint=f"best_{b}")
    return best


def _select_writers(emit: Emitter, idx: Value, lead: list[int]) -> Value:
    """w[p] over a static grid: max over rows n of (n + 1) where row n's flat position is p."""
    flat = _flat_positions(emit, idx, lead)
    grid = emit.const(np.arange(int(np.prod(lead, dtype=np.int64))).reshape(-1, 1), "i32", "grid")
    ids = _writer_ids(emit, idx)
    hits = emit("equal", [grid, emit("unsqueeze", [flat], {"axes": [0]}, "flat_b")], hint="hits")
    ids_b = emit("unsqueeze", [ids], {"axes": [0]}, "writer_b")
    return emit("reduce_max", [emit("where", [hits, ids_b, emit.const(0, "i32", "zero")], hint="hit_ids")],
                {"axes": [1]}, "grid_writer")


def _broadcast_over_slice(emit: Emitter, mask: Value, data: Value, k: int, hint: str) -> Value:
    extra = data.type.rank - k
    return emit("unsqueeze", [mask], {"axes": list(range(k, k + extra))}, hint) if extra else mask


# ------------------------------------------------------------------ forms
def rewrite_cast(graph: Graph, op: Op) -> Value:
    """scatter_nd with i64 indices -> the same with i32 indices."""
    emit = Emitter(graph, op)
    idx = emit("cast", [op.operands[0]], {"to": "i32"}, "indices_i32")
    return emit("scatter_nd", [idx, *op.operands[1:]], dict(op.attrs), "scatter_nd")


def rewrite_update(graph: Graph, op: Op, form: str, max_rows: int) -> Value:
    """scatter_nd_update -> the writer of each position, then one gather of rows (see the docstring)."""
    data, idx, upd = op.operands
    k = int(idx.shape[-1])
    emit = Emitter(graph, op)
    rows = _indices(emit, idx)
    lead = emit.dims(data, 0, k)
    w = _select_writers(emit, rows, lead) if form == "select" else _radix_writers(emit, rows, lead, max_rows)
    stacked = emit("concat", [_flat_rows(emit, data, k, "data_rows"),
                              _flat_rows(emit, upd, idx.type.rank - 1, "updates")], {"axis": 0}, "stacked")
    out = emit("gather", [stacked, _pick(emit, w, lead)], {"axis": 0}, "picked")
    if k == 1:
        return out
    if data.type.is_static:
        return emit("reshape", [out], {"shape": [int(d) for d in data.shape]}, "updated")
    return emit("reshape", [out, emit("shape", [data], {"dtype": "i32"}, "data_shape")], hint="updated")


def _pick(emit: Emitter, w: Value, lead: Value | list[int]) -> Value:
    """Row of concat(data rows, update rows) each position takes: P - 1 + w where written, else p."""
    grid = _grid_size(emit, lead)
    if isinstance(grid, list):
        own, last = emit.const(np.arange(grid[0]), "i32", "own_rows"), emit.const(grid[0] - 1, "i32", "last_row")
    else:
        size = emit("squeeze", [grid], {"axes": [0]}, "grid_count")
        own = emit("range", [emit.const(0, "i32", "zero"), size, emit.const(1, "i32", "one")], hint="own_rows")
        last = emit("sub", [size, emit.const(1, "i32", "one")], hint="last_row")
    written = emit("greater", [w, emit.const(0, "i32", "zero")], hint="hit")
    return emit("where", [written, emit("add", [w, last], hint="update_row"), own], hint="pick")


def rewrite_add(graph: Graph, op: Op) -> Value:
    """scatter_nd_add -> where(hit, data + scatter_nd(idx, upd), data)."""
    data, idx, upd = op.operands
    k = int(idx.shape[-1])
    emit = Emitter(graph, op)
    rows = _indices(emit, idx)
    flat_upd = _flat_rows(emit, upd, idx.type.rank - 1, "updates")
    sums = _scatter(emit, rows, flat_upd, emit.dims(data, 0), "sums")
    n, one = emit.dims(rows, 0, 1), emit.const(1, "i32", "one")
    ones = emit("expand", [one], {"shape": n}, "ones") if isinstance(n, list) else emit("expand", [one, n], hint="ones")
    counts = _scatter(emit, rows, ones, emit.dims(data, 0, k), "counts")
    hit = _broadcast_over_slice(emit, emit("greater", [counts, emit.const(0, "i32", "zero")], hint="hit"),
                                data, k, "hit_b")
    return emit("where", [hit, emit("add", [data, sums], hint="added"), data], hint="accumulated")


def choose_form(op: Op, form: str, select_max_grid: int) -> str:
    """The update form for this op: "select" on a small static grid, else "radix".

    A forced "select" still needs a static grid; without one it is "radix".
    """
    size = dim_prod(op.operands[0].shape[:int(op.operands[1].shape[-1])])
    if not is_static(size) or form == "radix":
        return "radix"
    return "select" if form == "select" or size <= select_max_grid else "radix"


@register_pass
@dataclass(frozen=True)
class LegalizeScatterNd(Pass):
    """Rewrite scatter_nd / scatter_nd_update / scatter_nd_add into forms every target runs (exact)."""

    legalizes: ClassVar[tuple[str, ...]] = ("scatter_nd", "scatter_nd_update", "scatter_nd_add")
    targets: str = "onnx,tflite"  # rewrite an op when one of these lacks its form
    form: Literal["auto", "radix", "select"] = "auto"  # scatter_nd_update's rewrite
    select_max_grid: int = 64  # "select" when data's indexed grid is static and at most this big
    max_rows: int = 1 << 20  # "radix": bound on a symbolic number of index rows
    force: bool = False  # rewrite even ops every target runs natively (measurements)

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in [o for o in graph.ops if o.kind in self.legalizes]:
            reasons = [] if self.force else unsupported_on(op, self.targets)
            if not reasons and not self.force:
                continue  # native where every target runs it: measured faster
            if not is_static(op.operands[1 if op.kind != "scatter_nd" else 0].shape[-1]):
                raise BertcError(f"{op.kind} at {op.loc}: the index depth (last dim of the indices) must be "
                                 "known to rewrite it.")
            if op.kind == "scatter_nd":
                if op.operands[0].dtype == "i32":
                    continue  # nothing this pass can change (f16 or bool updates)
                new = rewrite_cast(graph, op)
            elif op.kind == "scatter_nd_update":
                new = rewrite_update(graph, op, choose_form(op, self.form, self.select_max_grid), self.max_rows)
            else:
                new = rewrite_add(graph, op)
            log.info("%s at %s rewritten (%s)", op.kind, op.loc, "; ".join(reasons) or "forced")
            graph.replace_op(op, [new])
            changed = True
        return changed
