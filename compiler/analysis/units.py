"""Which heads or neurons a pruning pass keeps: ``keep=`` text, score ranking, how layers are named."""

from __future__ import annotations

import math

import numpy as np

from bertc.analysis.prune_edit import PruneError
from bertc.analysis.structure import Structure


def parse_keep(text: str, counts: dict[int, int], unit: str = "head") -> dict[int, list[int]]:
    """'0:0,1,5;3:2' -> {0: [0, 1, 5], 3: [2]}; '2:' keeps nothing of layer 2."""
    out: dict[int, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        layer_s, sep, units_s = part.partition(":")
        try:
            layer = int(layer_s)
            units = [int(u) for u in units_s.replace(" ", "").split(",") if u]
        except ValueError:
            raise PruneError(f"keep={text!r}: '{part}' is not LAYER:{unit.upper()},{unit.upper()},…") from None
        if not sep:
            raise PruneError(f"keep={text!r}: '{part}' lacks ':' (write LAYER:{unit}s, e.g. 0:1,3)")
        if layer not in counts:
            raise PruneError(f"keep={text!r}: layer {layer} has no {unit}s to prune "
                             f"(layers found: {sorted(counts) or 'none'})")
        bad = [u for u in units if not 0 <= u < counts[layer]]
        if bad or len(set(units)) != len(units):
            raise PruneError(f"keep={text!r}: layer {layer} has {unit}s 0..{counts[layer] - 1}; "
                             f"got {units_s or 'none'}")
        if layer in out:
            raise PruneError(f"keep={text!r}: layer {layer} is given twice")
        out[layer] = sorted(units)
    return out


def select_units(scores: dict[int, np.ndarray], remove: int | None, ratio: float | None, per_layer: bool,
                 min_keep: int, normalize: bool) -> tuple[dict[int, list[int]], list[str]]:
    """Kept indices per layer: drop the lowest scores, globally or per layer, keeping >= min_keep each."""
    notes: list[str] = []
    counts = {k: len(v) for k, v in scores.items()}
    if per_layer:
        kept = {}
        for layer, s in scores.items():
            want = remove if remove is not None else math.floor(ratio * len(s) + 0.5)
            n = max(0, min(want, len(s) - min_keep))
            if n < want:
                notes.append(f"layer {layer}: removed {n} of the {want} asked (min {min_keep} kept)")
            order = sorted(range(len(s)), key=lambda i: (s[i], i))
            kept[layer] = sorted(order[n:])
        return kept, notes
    ranked = {k: v for k, v in scores.items()}
    if normalize:
        ranked = {}
        for k, v in scores.items():
            norm = float(np.linalg.norm(v))
            ranked[k] = v / norm if norm > 0 else v
    total = sum(counts.values())
    want = remove if remove is not None else math.floor(ratio * total + 0.5)
    order = sorted(((float(s), layer, i) for layer, v in ranked.items() for i, s in enumerate(v)))
    left = dict(counts)
    dropped: set[tuple[int, int]] = set()
    for _, layer, i in order:
        if len(dropped) >= want:
            break
        if left[layer] > min_keep:
            dropped.add((layer, i))
            left[layer] -= 1
    if len(dropped) < want:
        notes.append(f"removed {len(dropped)} of the {want} asked: every layer keeps at least {min_keep}")
    return {layer: [i for i in range(n) if (layer, i) not in dropped] for layer, n in counts.items()}, notes


def layer_counts(structure: Structure) -> dict[int, int]:
    """Heads per layer index, for the layers that have attention."""
    return {layer.index: layer.attention.heads for layer in structure.layers if layer.attention is not None}


def layer_where(graph_layer) -> str:
    """How errors name a layer: its index and the location of its first projection."""
    a, f = graph_layer.attention, graph_layer.ffn
    op = a.q.op if a is not None else f.up.op
    return f"layer {graph_layer.index} ({op.loc})"
