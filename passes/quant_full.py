"""Static int8 ("full") quantization of the dense layers from calibrated activation ranges.

For each eligible ``y = matmul(x, W)`` (W a 2-D f32 constant; activation x
activation matmuls stay float) and its optional bias ``add(y, b)``:

    %xq = quantize %x, %sx, %zx            : i8    per tensor, from the calibrated range of x
    %xd = dequantize %xq, %sx, %zx         : f32
    %wd = dequantize @Wq, @sw, @zw {axis=1} : f32[K,N]   symmetric per output column
    %y  = matmul %xd, %wd
    %yb = add %y, @b                        (only where the model has that bias add)
    %yq = quantize %yb, %sy, %zy           : i8    from the calibrated range of yb (or y)
    %yd = dequantize %yq, %sy, %zy         ; every former user of yb (or y) reads yd

* Activations: asymmetric int8 over the calibrated [lo, hi] widened to include 0:
  ``sx = (hi - lo) / 255``, ``zx = round(-128 - lo / sx)`` (f32, ties to even;
  ``bertc.ops.quant.dynamic_quant_params`` applied to the range, so a calibrated
  and a run-time range give the same parameters).  One quantize per distinct
  activation: Q, K and V read one x and share one xq/xd.
* Weights: ``quant_int8.quantize_symmetric`` per output column, q in [-127, 127]
  (``weight_bits=7``: [-63, 63], for onnxruntime's u8 x s8 kernels; see quant_int8),
  zero points 0.
* ``outputs=`` says whose results get the yq/yd pair: roles (below), ``all``
  (``true``) or ``none`` (``false``).  Default ``qkv,ffn_up``: the attention
  output and FFN down projections feed the residual stream, whose per-tensor
  range is set by a few outlier dimensions, so an int8 grid over it erases the
  rest.  Measured on all-MiniLM-L6-v2 (64 Sara test sentences vs float,
  percentile ranges): results re-quantized for none/qkv,ffn_up/all move the
  logits by 17%/21%/49% of their range; ffn_down alone accounts for 44%.  A
  matmul without the pair keeps a float result (onnxruntime:
  MatMulIntegerToFloat).  Where a re-quantized output feeds the next quantized
  matmul directly, that matmul reads yd as its xd (re-quantizing yd with its
  own range would give back yq).

Exclusions (``exclude=``, comma/space separated): op kinds, roles, or fnmatch
patterns on the matmul's location names (``"*layer_5*"``); ``none`` quantizes
everything eligible.  Default ``layer_norm,softmax,embeddings,classifier``:

* layer_norm, softmax (and GELU, residual adds, any op kind other than matmul)
  are never quantized in this form, so naming them changes nothing; they are
  in the default to say so;
* embeddings: gather tables stay float (this pass never quantizes them);
* classifier: the final dense layer(s) stay float.  Roles: ``qkv``
  (``attention.q``/``.k``/``.v``), ``attention_output`` (``attention.o``),
  ``ffn_up``, ``ffn_down`` (``ffn.up``/``.down`` too), ``pooler`` (a dense
  layer followed by tanh after the encoder), ``classifier`` (a dense layer
  whose result reaches a graph output through no other matmul), ``other``.

A word that is no op kind, role or keyword and matches no matmul location is an
error (a typo would otherwise silently quantize what the user meant to keep).

``target_drop=0.01``: rank the quantized matmuls, grouped per encoder layer (and
pooler/classifier), by the output error each group's quantization alone adds
on the calibration data (``bertc.analysis.sensitivity``), then keep the most
sensitive groups float, one at a time, until the drop vs the float model
(argmax disagreement on classifier outputs, else 1 - mean row cosine) is
<= target_drop.  The report records the ranking and what stayed float.

ONNX (compiler/targets/onnx.py) lowers each such matmul, its bias and the two
dequantizes to one com.microsoft MatMulIntegerToFloat: on u8 x u8 integers with
8-bit weights (exact; u8 x s8 saturates on AVX2), measured 0.64-0.73x fp32's time on
BERT-base-wide layers (benchmarks/quant_full.py); on u8 x s8 with ``weight_bits=7``
(exact, since the pair sums fit in int16, and faster).

Ranges come from ``graph.analyses["calibration"]`` (the ``calibrate`` pass),
keyed by location (``bertc.analysis.ranges.value_keys``); they are all read
before the first op is inserted, and inserted ops get locations of their own
(``<loc>/quantize`` …) so the keys of existing values stay valid afterwards.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bertc.diagnostics import BertcError
from bertc.ir import Graph, Op, Value
from bertc.ir.graph import Loc
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.fidelity import Fidelity

from .quant_int8 import _eligible_matmul, _roles, check_weight_bits, quantize_symmetric

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE = "layer_norm,softmax,embeddings,classifier"
DEFAULT_OUTPUTS = "qkv,ffn_up"  # whose results are re-quantized (see the module docstring)
OUTPUT_ALIASES = {"true": "all", "false": "none"}
ROLE_ALIASES = {"attention.q": "qkv", "attention.k": "qkv", "attention.v": "qkv",
                "attention.o": "attention_output", "ffn.up": "ffn_up", "ffn.down": "ffn_down"}
ROLES = ("qkv", "attention_output", "ffn_up", "ffn_down", "pooler", "classifier", "other")
KEYWORDS = ("embeddings",)  # gather tables: never quantized here
NO_CALIBRATION = ("quant_full needs calibrated activation ranges and the graph has none: put `calibrate` "
                  "before `quant_full` in --passes (e.g. --passes \"calibrate,quant_full\" --calib data.csv "
                  "--vocab vocab.txt; without --calib, calibrate uses random token ids).")


@dataclass
class Site:
    """One eligible matmul, what follows it, and the ranges its rewrite needs (read up front)."""

    op: Op
    bias: Op | None
    role: str
    fine_role: str
    group: str
    key: str  # the matmul result's stable key: finds the same site in a copy of the graph
    x_range: tuple[float, float] | None
    out_range: tuple[float, float] | None


def activation_params(lo: float, hi: float) -> tuple[np.float32, np.int8]:
    """Asymmetric int8 (scale, zero point) for the range [lo, hi] widened to include 0."""
    from bertc.ops.quant import dynamic_quant_params

    _, scale, zero = dynamic_quant_params(np.array([lo, hi], np.float32), "i8", False, False)
    return np.float32(scale), np.int8(zero)


def split_words(spec: str) -> tuple[str, ...]:
    """Words of an exclude= value: separated by commas, semicolons or spaces (not brackets:
    fnmatch patterns use them, ``*layer_[0-3]/*``)."""
    return tuple(w for w in re.split(r"[\s,;]+", spec) if w)


@register_pass
@dataclass(frozen=True)
class QuantFull(Pass):
    """Static int8: activations quantized with calibrated ranges, int8 weights (needs calibrate first)."""

    exclude: str = DEFAULT_EXCLUDE
    outputs: str = DEFAULT_OUTPUTS
    target_drop: float | None = None
    weight_bits: int = 8

    # Measured on the tiny test BERT (tests/test_quant_full.py; 2 layers, hidden 64, minmax
    # ranges from random token ids; 98 rows: verify's DEFAULT_CASES, (8, 32), ten random 8x24):
    # vs TF, the logits move by 5.3% of their range (2.1% with outputs=false), every row's
    # cosine >= 0.9968, argmax agrees on 97 of 98 rows (near-tied logits of random weights).
    # exclude=none is far worse, 41% and cosine 0.945: the classifier's output range from
    # calibration clips logits of inputs unlike the calibration data, which is why the
    # classifier stays float by default (and why this bound then fails, as it should).
    # Deep models accumulate more error than 2 layers: the bound is quant_int8's (row
    # cosine >= 0.95, range error <= 30%), with --max-drop or target_drop for the argmax.
    fidelity: ClassVar[Fidelity] = Fidelity(
        max_rel_error=0.3, min_cosine=0.95,
        reason="quant_full: int8 weights, activations quantized with calibrated static ranges")

    @property
    def uses_calibration(self) -> bool:
        """target_drop ranks layers by their error on calibration sentences."""
        return self.target_drop is not None

    def __post_init__(self) -> None:
        if self.target_drop is not None and not 0.0 <= self.target_drop < 1.0:
            raise ValueError(f"target_drop={self.target_drop}: a fraction in [0, 1), e.g. 0.01")
        words = split_words(self.exclude)
        if "none" in words and len(words) > 1:
            raise ValueError(f"exclude={self.exclude!r}: 'none' (quantize everything eligible) stands alone")
        output_roles(self.outputs)  # validates
        check_weight_bits(self.weight_bits)

    # ------------------------------------------------------------------ run
    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        cal = graph.analyses.get("calibration")
        if not cal or not cal.get("ranges"):
            raise BertcError(NO_CALIBRATION)
        _, bytes_before = graph.num_parameters()
        sites = find_sites(graph)
        excluded, notes = self.resolve_exclusions(sites)
        chosen = [s for s in sites if s.key not in excluded and s.x_range is not None and s.out_range is not None]
        missing = [s.op.loc.primary for s in sites if s.key not in excluded and s not in chosen]
        if missing:
            notes.append(f"{len(missing)} matmul(s) have no calibrated range and stay float: {missing[:5]}")
        tuning: dict[str, Any] = {}
        if self.target_drop is not None and chosen:
            keep = self._tune(graph, chosen, ctx, tuning)
            chosen = [s for s in chosen if s.group not in keep]
        n_act = rewrite_sites(graph, chosen, output_roles(self.outputs), self.weight_bits)
        eliminate_dead_code(graph)
        _, bytes_after = graph.num_parameters()
        ctx.report[self.name] = self._report(cal, sites, chosen, excluded, n_act, bytes_before, bytes_after,
                                             notes, tuning)
        log.info("quant_full: %d of %d matmuls quantized (%d activations); weights %d -> %d bytes",
                 len(chosen), len(sites), n_act, bytes_before, bytes_after)
        return bool(chosen)

    def resolve_exclusions(self, sites: list[Site]) -> tuple[set[str], list[str]]:
        """Keys of the excluded sites and notes on words that exclude nothing by design."""
        from bertc.ir.registry import all_op_defs

        words = split_words(self.exclude)
        if words in ((), ("none",)):
            return set(), []
        kinds = set(all_op_defs())
        excluded: set[str] = set()
        notes: list[str] = []
        unknown: list[str] = []
        for w in words:
            if w in ROLES or w in ROLE_ALIASES:
                excluded |= {s.key for s in sites if w in (s.role, s.fine_role)}
            elif w in KEYWORDS:
                notes.append("embeddings: gather tables are never quantized by quant_full (they stay f32)")
            elif w in kinds:
                if w == "matmul":
                    excluded |= {s.key for s in sites}
                else:
                    notes.append(f"{w}: only matmuls are quantized in this form, so {w} ops stay float anyway")
            else:
                hit = {s.key for s in sites if any(fnmatch.fnmatchcase(n, w) for n in s.op.loc.names)}
                if not hit:
                    unknown.append(w)
                excluded |= hit
        if unknown:
            raise BertcError(f"quant_full: exclude={self.exclude!r}: {', '.join(map(repr, unknown))} "
                             "is no op kind, role or keyword and matches no matmul location.",
                             f"Roles: {', '.join(ROLES)} (also {', '.join(ROLE_ALIASES)}); keyword: embeddings; "
                             "op kinds such as layer_norm, softmax, matmul; fnmatch patterns on location "
                             "names such as '*layer_5*'; or none.")
        return excluded, notes

    # ------------------------------------------------------------------ target_drop
    def sensitivity(self, graph: Graph, ctx: PassContext, batches=None):
        """Groups of this pass's quantizable matmuls, each quantized alone, most sensitive first
        (``bertc.analysis.sensitivity.rank_groups``).  Returns (ranking, batches, float outputs)."""
        from bertc.analysis import sensitivity as S

        if not graph.analyses.get("calibration"):
            raise BertcError(NO_CALIBRATION)
        sites = find_sites(graph)
        excluded, _ = self.resolve_exclusions(sites)
        groups: dict[str, int] = {}
        for s in sites:
            if s.key not in excluded:
                groups[s.group] = groups.get(s.group, 0) + 1
        batches = batches if batches is not None else S.calibration_batches(graph, ctx)
        reference = S.run_outputs(graph, batches)
        ranking = S.rank_groups(graph, groups, self._quantize_groups(excluded), batches, reference)
        return ranking, batches, reference

    def _quantize_groups(self, excluded: set[str]):
        def quantize(copy: Graph, groups: set[str]) -> None:
            sites = [s for s in find_sites(copy) if s.group in groups and s.key not in excluded
                     and s.x_range is not None and s.out_range is not None]
            rewrite_sites(copy, sites, output_roles(self.outputs), self.weight_bits)
        return quantize

    def _tune(self, graph: Graph, chosen: list[Site], ctx: PassContext, tuning: dict[str, Any]) -> list[str]:
        """Groups to keep float, most sensitive first, until the drop is within target_drop."""
        from bertc.analysis import sensitivity as S

        excluded = {s.key for s in find_sites(graph)} - {s.key for s in chosen}
        ranking, batches, reference = self.sensitivity(graph, ctx)
        quantize = self._quantize_groups(excluded)
        groups = [r.group for r in ranking]
        keep: list[str] = []
        steps = []
        while True:
            drop, error = S.drop_with(graph, [g for g in groups if g not in keep], quantize, batches, reference)
            steps.append({"kept_float": list(keep), "drop": drop, "error": error})
            if drop <= self.target_drop or len(keep) == len(groups):
                break
            keep.append(groups[len(keep)])
        tuning.update({"target_drop": self.target_drop, "ranking": [r.to_json() for r in ranking],
                       "kept_float": keep, "steps": steps, "drop": steps[-1]["drop"],
                       "batches": len(batches)})
        return keep

    # ------------------------------------------------------------------ report
    def _report(self, cal: dict, sites: list[Site], chosen: list[Site], excluded: set[str], n_act: int,
                bytes_before: int, bytes_after: int, notes: list[str], tuning: dict) -> dict[str, Any]:
        done = {s.key for s in chosen}
        by_role: dict[str, dict[str, int]] = {}
        for s in sites:
            row = by_role.setdefault(s.role, {"quantized": 0, "excluded": 0, "float": 0})
            row["quantized" if s.key in done else "excluded" if s.key in excluded else "float"] += 1
        rep: dict[str, Any] = {
            "spec": self.spec(), "calibration": {k: cal.get(k) for k in ("method", "samples", "tokens", "percentile")
                                                 if k in cal},
            "matmuls": len(sites), "quantized": len(done), "activations_quantized": n_act,
            "outputs_quantized": sorted(output_roles(self.outputs)), "by_role": by_role,
            "excluded_locations": [s.op.loc.primary for s in sites if s.key in excluded],
            "weight_bytes_before": bytes_before, "weight_bytes_after": bytes_after, "notes": notes}
        if tuning:
            rep["target_drop"] = tuning
        return rep


# ------------------------------------------------------------------ finding sites
def find_sites(graph: Graph) -> list[Site]:
    """Every eligible matmul in graph order, with its role, group and calibrated ranges."""
    from bertc.analysis.ranges import value_keys

    keys = value_keys(graph)
    ranges = (graph.analyses.get("calibration") or {}).get("ranges", {})
    fine = _roles(graph)
    layers = _layer_index(graph)
    sites = []
    for op in graph.ops:
        if not _eligible_matmul(op):
            continue
        bias = _bias_add(op)
        out = bias.result if bias is not None else op.result
        fine_role = fine.get(id(op)) or _head_role(graph, op, out)
        role = ROLE_ALIASES.get(fine_role, fine_role)
        group = f"layer_{layers[id(op)]}" if id(op) in layers else role if role != "other" else op.loc.primary
        x = op.operands[0]
        sites.append(Site(op, bias, role, fine_role, group, keys[id(op.result)],
                          _range(ranges, keys.get(id(x))), _range(ranges, keys.get(id(out)))))
    return sites


def _range(ranges: dict, key: str | None) -> tuple[float, float] | None:
    r = ranges.get(key) if key is not None else None
    return (float(r[0]), float(r[1])) if r is not None else None


def _bias_add(op: Op) -> Op | None:
    """The ``add(y, b)`` right after ``op`` (its only user), b a 1-D f32 constant of N."""
    y = op.result
    if len(y.uses) != 1:
        return None
    user, i = y.uses[0]
    if user.kind != "add" or any(v is y for name, v in op.graph.outputs.items()):
        return None
    b = user.operands[1 - i]
    n = op.operands[1].shape[1]
    if not (b.is_const() and b.dtype == "f32" and b.type.rank == 1 and b.shape[0] == n):
        return None
    return user if user.result.shape == y.shape else None


def _head_role(graph: Graph, op: Op, out: Value) -> str:
    """pooler (dense + tanh), classifier (reaches an output through no other matmul) or other."""
    if any(u.kind == "tanh" for u in out.users):
        return "pooler"
    outputs = {id(v) for v in graph.outputs.values()}
    todo, seen = [out], set()
    while todo:
        v = todo.pop()
        if id(v) in outputs:
            return "classifier"
        if id(v) in seen:
            continue
        seen.add(id(v))
        todo.extend(r for u in v.users if u.kind not in ("matmul", "qmatmul", "einsum") for r in u.results)
    return "other"


def _layer_index(graph: Graph) -> dict[int, int]:
    """id(dense matmul) -> index of its encoder layer (bertc.analysis.structure)."""
    from bertc.analysis.structure import analyze_structure

    saved = graph.analyses.get("structure")
    try:
        structure = analyze_structure(graph)
    except Exception as e:  # grouping is best effort: ungrouped matmuls form groups of one
        log.debug("structure analysis failed: %s", e)
        return {}
    finally:
        if saved is None:
            graph.analyses.pop("structure", None)
        else:
            graph.analyses["structure"] = saved
    out: dict[int, int] = {}
    for i, layer in enumerate(structure.layers):
        projections = [getattr(layer.attention, k) for k in "qkvo"] if layer.attention is not None else []
        if layer.ffn is not None:
            projections += [layer.ffn.up, layer.ffn.down]
        for p in projections:
            out[id(p.op)] = i
    return out


# ------------------------------------------------------------------ rewriting
def output_roles(spec: str) -> frozenset[str]:
    """The roles named by ``outputs=`` (``all``/``true``, ``none``/``false``, or role names)."""
    words = [OUTPUT_ALIASES.get(w.lower(), w) for w in split_words(str(spec))]
    if words in (["all"], ["none"]):
        return frozenset(ROLES) if words == ["all"] else frozenset()
    roles = [ROLE_ALIASES.get(w, w) for w in words]
    unknown = [w for w, r in zip(words, roles) if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"outputs={spec!r}: all, none, or roles from {', '.join(ROLES)} "
                         f"(unknown: {', '.join(unknown) or 'none given'})")
    return frozenset(roles)


def rewrite_sites(graph: Graph, sites: list[Site], outputs: frozenset[str], weight_bits: int = 8) -> int:
    """Insert the quantize/dequantize form around each site, re-quantizing the results of the
    sites whose role is in ``outputs``, kernels rounded to ``weight_bits``; returns how many
    activations got a quantize.  Sites must come from ``find_sites`` on this graph (ranges
    read already)."""
    acts: dict[int, Value] = {}  # id(x) -> its xd, shared by every matmul reading x
    weights: dict[int, Value] = {}  # id(W) -> its wd
    ours: set[int] = set()  # output dequantizes inserted here
    for s in sites:
        op = s.op
        x, w = op.operands
        if id(x) not in acts:
            acts[id(x)] = x if id(x) in ours else _qdq(graph, x, s.x_range, before=op)
        wd = weights.get(id(w))
        if wd is None:
            wd = weights[id(w)] = _weight_dequantize(graph, w, op, weight_bits)
        new = graph.add("matmul", [acts[id(x)], wd], {}, op.loc, op.result.name, before=op)
        graph.replace_op(op, [new.result])
        if s.role in outputs:
            out = s.bias.result if s.bias is not None else new.result
            ours.add(id(_quantize_output(graph, out, s.out_range)))
    return sum(1 for k, v in acts.items() if k not in ours)


def _qdq(graph: Graph, x: Value, rng: tuple[float, float], before: Op) -> Value:
    """dequantize(quantize(x)) with per-tensor params from ``rng``; the pair's result."""
    scale, zero = activation_params(*rng)
    base = x.producer.loc.primary if x.producer is not None else x.name
    loc = Loc.of(f"{base}/quantize")
    s = graph.const(scale, f"{base}/act_scale", loc, before=before)
    z = graph.const(zero, f"{base}/act_zero_point", loc, before=before)
    q = graph.add("quantize", [x, s, z], {}, loc, f"{x.name}_q", before=before)
    return graph.add("dequantize", [q.result, s, z], {}, Loc.of(f"{base}/dequantize"), f"{x.name}_dq",
                     before=before).result


def _weight_dequantize(graph: Graph, w: Value, before: Op, bits: int) -> Value:
    q, scale = quantize_symmetric(w.const_value(), 1, bits)
    name, loc = w.producer.attrs["name"], w.producer.loc
    wq = graph.const(q, f"{name}_int8", loc, before=before)
    ws = graph.const(scale, f"{name}_scale", loc, before=before)
    wz = graph.const(np.zeros_like(q, shape=scale.shape), f"{name}_zero_point", loc, before=before)
    return graph.add("dequantize", [wq, ws, wz], {"axis": 1}, Loc.of(f"{loc.primary}/dequantize"),
                     f"{w.name}_dq", before=before).result


def _quantize_output(graph: Graph, out: Value, rng: tuple[float, float]) -> Value:
    """Insert quantize/dequantize right after ``out``'s producer; every former user reads yd."""
    users = list(out.uses)
    names = [k for k, v in graph.outputs.items() if v is out]
    ops = graph.ops
    i = ops.index(out.producer)
    after = ops[i + 1] if i + 1 < len(ops) else None
    if after is None:
        yd = _append_qdq(graph, out, rng)
    else:
        yd = _qdq(graph, out, rng, before=after)
    for user, j in users:
        user.set_operand(j, yd)
    for k in names:
        graph.outputs[k] = yd
    return yd


def _append_qdq(graph: Graph, out: Value, rng: tuple[float, float]) -> Value:
    """As _qdq, for a value computed by the graph's last op."""
    sentinel = graph.add("identity", [out], {}, Loc.of("quant_full/tmp"))
    yd = _qdq(graph, out, rng, before=sentinel)
    graph.erase(sentinel)
    return yd
