"""Which passes make a graph legal for a target, and the report `bertc check` prints.

Each target lists what it runs natively (its capability table); each
legalization pass declares the op kinds it rewrites (``legalizes``) or the
dtypes it rewrites on any op kind (``legalizes_dtypes``: legalize_f64 takes
f64 off every op).  An op a target lacks is either rewritten by such passes or
reported with the reason no pass can.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from .ir.graph import Graph, Op
from .pass_manager import Pass, all_passes
from .targets.base import Target, Unsupported

CLEANUP = ("fold_constants", "cse", "dce")


def legalizers() -> dict[str, type[Pass]]:
    """op kind -> the pass that rewrites it."""
    out: dict[str, type[Pass]] = {}
    for cls in all_passes().values():
        for kind in getattr(cls, "legalizes", ()):
            out.setdefault(kind, cls)
    return out


def dtype_legalizers() -> dict[str, type[Pass]]:
    """dtype -> the pass that rewrites it away, whatever the op kind."""
    out: dict[str, type[Pass]] = {}
    for cls in all_passes().values():
        for dtype in getattr(cls, "legalizes_dtypes", ()):
            out.setdefault(dtype, cls)
    return out


def rewrites_for(op: Op) -> tuple[str, ...]:
    """The passes that make an unsupported ``op`` legal, in the order they must run.

    A dtype pass comes first: it changes the dtypes (f64 -> f32 or an integer
    table) that a kind pass (legalize_erf on f32) then sees.
    """
    by_dtype = dtype_legalizers()
    names = [by_dtype[v.dtype].name for v in (*op.operands, *op.results) if v.dtype in by_dtype]
    kind = legalizers().get(op.kind)
    if kind is not None:
        names.append(kind.name)
    return tuple(dict.fromkeys(names))


def explain(op: Op) -> str:
    """'pass X rewrites it' or 'no pass rewrites it': the fix to print next to an unsupported op."""
    names = rewrites_for(op)
    return f"pass {', then '.join(names)} rewrites it" if names else "no pass rewrites it"


@dataclass
class Finding:
    target: str
    kind: str
    count: int
    locations: list[str]
    reason: str
    rewrites: tuple[str, ...]  # pass names in running order; () when no pass rewrites it

    @property
    def rewrite(self) -> str | None:
        """The fix as text ('legalize_f64, then legalize_erf'), or None."""
        return ", then ".join(self.rewrites) or None


def findings(graph: Graph, targets: list[Target]) -> list[Finding]:
    out = []
    for target in targets:
        by_kind: dict[tuple[str, str, tuple[str, ...]], list[Unsupported]] = {}
        for u in target.unsupported(graph):
            by_kind.setdefault((u.op.kind, u.reason, rewrites_for(u.op)), []).append(u)
        for (kind, reason, rewrites), items in sorted(by_kind.items()):
            out.append(Finding(target.name, kind, len(items), [u.op.loc.primary for u in items], reason,
                               rewrites))
    return out


def plan(graph: Graph, targets: list[Target]) -> list[Pass]:
    """The legalization passes plus cleanup that the graph needs: dtype passes first (they
    change what the kind passes see), then kind passes, each group in registry order."""
    needed = {name for f in findings(graph, targets) for name in f.rewrites}
    if not needed:
        return []
    passes = all_passes()
    names = ",".join(t.name for t in targets)
    dtype_passes = {cls.name for cls in dtype_legalizers().values()}
    chosen: list[Pass] = []
    for name in sorted(needed, key=lambda n: (n not in dtype_passes, n)):
        cls = passes[name]
        # Target-aware passes rewrite only the forms the chosen targets cannot run.
        fields = {f.name for f in dataclasses.fields(cls)}
        chosen.append(cls(targets=names) if "targets" in fields else cls())
    return chosen + [passes[name]() for name in CLEANUP]


def check_facts(graph: Graph, targets: list[Target], after: Graph | None) -> dict:
    """What `bertc check` finds, as data: per target, each unsupported op kind with its count,
    locations, reason and rewrite, and what is left after legalization (None: not legalized)."""
    found = findings(graph, targets)
    remaining = findings(after, targets) if after is not None else None
    facts: dict = {"targets": {}}
    for target in targets:
        left = None if remaining is None else [f for f in remaining if f.target == target.name]
        facts["targets"][target.name] = {
            "unsupported": [{"kind": f.kind, "count": f.count, "locations": f.locations, "reason": f.reason,
                             "rewritten_by": list(f.rewrites)} for f in found if f.target == target.name],
            "left_after_legalization": None if left is None else dict(Counter({f.kind: f.count for f in left})),
        }
    facts["legal"] = remaining is not None and not remaining
    return facts


def report(graph: Graph, targets: list[Target], after: Graph | None) -> tuple[str, bool]:
    """The text `bertc check` prints, and whether the model is legal after legalization."""
    facts = check_facts(graph, targets, after)
    lines: list[str] = []
    for name, t in facts["targets"].items():
        mine = t["unsupported"]
        lines.append(f"target {name}: " + (f"{len(mine)} kind(s) of op need work" if mine else
                                           "legal as it is (every op is supported; nothing to legalize)"))
        for f in mine:
            where = ", ".join(f["locations"][:3]) + (f" and {f['count'] - 3} more" if f["count"] > 3 else "")
            fix = (f"rewritten by {', then '.join(f['rewritten_by'])}" if f["rewritten_by"]
                   else "no rewrite: no bertc pass handles this form")
            lines.append(f"  {f['kind']} x{f['count']} ({f['reason']}) at {where}")
            lines.append(f"    -> {fix}")
    if after is not None:
        for name, t in facts["targets"].items():
            if not t["unsupported"]:
                continue  # legal as it is: said above
            left = t["left_after_legalization"]
            if left:
                lines.append(f"after legalization, {name} is NOT legal: "
                             + ", ".join(f"{k} x{n}" for k, n in left.items()))
            else:
                lines.append(f"after legalization, {name} is legal")
    return "\n".join(lines) + "\n", facts["legal"] if after is not None else True


def unsupported_on(op, targets: str) -> list[str]:
    """Why the listed targets (comma-separated names) cannot run ``op`` as it is; [] if all can.

    Legalization passes ask this to leave alone an op every target runs natively.
    Reads the targets' capability tables (data); nothing is lowered.
    """
    from .targets.base import get_target

    reasons = []
    for name in filter(None, (t.strip() for t in targets.split(","))):
        caps = get_target(name).capabilities
        if op.kind not in caps:
            reasons.append(f"{op.kind} has no {name} equivalent")
            continue
        check = caps[op.kind]
        reason = check(op) if check else None
        if reason:
            reasons.append(reason)
    return reasons
