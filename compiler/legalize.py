"""Which passes make a graph legal for a target, and the report `bertc check` prints.

Each target lists what it runs natively (its capability table); each
legalization pass declares the op kinds it rewrites (``legalizes``).  An op a
target lacks is either rewritten by such a pass or reported with the reason
no pass can.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from .ir.graph import Graph
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


@dataclass
class Finding:
    target: str
    kind: str
    count: int
    locations: list[str]
    reason: str
    rewrite: str | None  # pass name, or None when no pass rewrites it


def findings(graph: Graph, targets: list[Target]) -> list[Finding]:
    table = legalizers()
    out = []
    for target in targets:
        by_kind: dict[tuple[str, str], list[Unsupported]] = {}
        for u in target.unsupported(graph):
            by_kind.setdefault((u.op.kind, u.reason), []).append(u)
        for (kind, reason), items in sorted(by_kind.items()):
            cls = table.get(kind)
            out.append(Finding(target.name, kind, len(items), [u.op.loc.primary for u in items], reason,
                               cls.name if cls else None))
    return out


def plan(graph: Graph, targets: list[Target]) -> list[Pass]:
    """The legalization passes (in registry order) plus cleanup that the graph needs."""
    needed = {f.rewrite for f in findings(graph, targets) if f.rewrite}
    if not needed:
        return []
    passes = all_passes()
    names = ",".join(t.name for t in targets)
    chosen: list[Pass] = []
    for name in sorted(needed):
        cls = passes[name]
        # Target-aware passes rewrite only the forms the chosen targets cannot run.
        fields = {f.name for f in dataclasses.fields(cls)}
        chosen.append(cls(targets=names) if "targets" in fields else cls())
    return chosen + [passes[name]() for name in CLEANUP]


def report(graph: Graph, targets: list[Target], after: Graph | None) -> tuple[str, bool]:
    """The text `bertc check` prints, and whether the model is legal after legalization."""
    lines: list[str] = []
    found = findings(graph, targets)
    for target in targets:
        mine = [f for f in found if f.target == target.name]
        lines.append(f"target {target.name}: {'all ops are supported' if not mine else f'{len(mine)} kind(s) of op need work'}")
        for f in mine:
            where = ", ".join(f.locations[:3]) + (f" and {f.count - 3} more" if f.count > 3 else "")
            fix = f"rewritten by {f.rewrite}" if f.rewrite else "no rewrite: no bertc pass handles this form"
            lines.append(f"  {f.kind} x{f.count} ({f.reason}) at {where}")
            lines.append(f"    -> {fix}")
    legal = True
    if after is not None:
        remaining = findings(after, targets)
        legal = not remaining
        for target in targets:
            left = [f for f in remaining if f.target == target.name]
            if left:
                kinds = Counter({f.kind: f.count for f in left})
                lines.append(f"after legalization, {target.name} is NOT legal: "
                             + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
            else:
                lines.append(f"after legalization, {target.name} is legal")
    return "\n".join(lines) + "\n", legal


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
