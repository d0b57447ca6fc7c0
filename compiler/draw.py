"""``bertc inspect MODEL --draw LOC``: a picture of the IR around one op.

When a conversion fails on an op, its message names the op's TF location.
This draws that op's neighbourhood, ``depth`` ops deep each way (what feeds
it, what reads it), as a left-to-right dataflow chart: each node is an op kind
with the short name of the value it makes, each edge carries the type of the
value that flows along it.  The graph and its layout are networkx's
(``multipartite_layout``, one column per distance from the op); matplotlib
draws it.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from .diagnostics import BertcError, did_you_mean
from .ir.graph import Graph, Op, Value

MAX_NODES = 120  # past this a chart is unreadable: ask for a smaller --depth


def find_op(graph: Graph, loc: str) -> Op:
    """The op whose location is ``loc`` or, failing that, the first whose location contains it."""
    ops = [op for op in graph.ops if op.kind != "const"]
    exact = [op for op in ops if loc in op.loc.names]
    within = exact or [op for op in ops if any(loc in name for name in op.loc.names)]
    if not within:
        parts = loc.count("/") + 1  # compare with name endings of as many segments
        names = {"/".join(name.split("/")[-parts:]) for op in ops for name in op.loc.names}
        raise BertcError(f"--draw {loc}: no op's location contains '{loc}'.{did_you_mean(loc, names)}",
                         "`bertc import MODEL` prints every op with its loc(...).")
    return within[0]


def _short(value: Value, limit: int = 18) -> str:
    """The value's name, its last path segment, cut to ``limit`` characters."""
    name = value.name.rsplit("/", 1)[-1]
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _node_of(value: Value) -> tuple[str, str]:
    """(node id, label) of whatever defines ``value``: its op, or the graph input itself."""
    if value.producer is None:
        return f"input:{value.name}", f"input\n{_short(value)}"
    op = value.producer
    made = op.results[0] if op.results else value
    return f"op:{id(op)}", f"{op.kind}\n{_short(made)}"


def neighbourhood(graph: Graph, op: Op, depth: int) -> nx.DiGraph:
    """The ops within ``depth`` steps of ``op`` upstream and downstream, as a networkx DiGraph.

    Nodes carry ``label`` (op kind and short value name) and ``layer`` (signed distance from
    ``op``: negative upstream); every value passing between two drawn nodes is an edge whose
    ``label`` is its type.
    """
    g = nx.DiGraph()
    ops: dict[str, Op] = {}
    frontier: list[tuple[Op, int]] = [(op, 0)]
    node, label = _node_of(op.results[0]) if op.results else (f"op:{id(op)}", op.kind)
    g.add_node(node, label=label, layer=0, centre=True)
    ops[node] = op
    while frontier:
        current, layer = frontier.pop(0)
        if -depth < layer <= 0:  # upstream: what feeds it
            for value in current.operands:
                node, label = _node_of(value)
                if node not in g:
                    g.add_node(node, label=label, layer=layer - 1)
                    if value.producer is not None:
                        ops[node] = value.producer
                        frontier.append((value.producer, layer - 1))
        if 0 <= layer < depth:  # downstream: what reads it
            for user in (u for value in current.results for u in value.users):
                node = f"op:{id(user)}"
                if node not in g:
                    g.add_node(node, label=_node_of(user.results[0])[1] if user.results else user.kind,
                               layer=layer + 1)
                    ops[node] = user
                    frontier.append((user, layer + 1))
    for node, consumer in ops.items():
        for value in consumer.operands:
            source = _node_of(value)[0]
            if source in g:
                g.add_edge(source, node, label=str(value.type))
    return g


def draw_region(graph: Graph, loc: str, depth: int, out: Path) -> nx.DiGraph:
    """Draw the neighbourhood of the op at ``loc`` into the PNG ``out``; the DiGraph drawn."""
    if depth < 1:
        raise BertcError(f"--depth {depth}: must be at least 1.")
    op = find_op(graph, loc)
    g = neighbourhood(graph, op, depth)
    if len(g) > MAX_NODES:
        raise BertcError(f"--draw {loc} --depth {depth}: {len(g)} ops, too many to read in one picture.",
                         "Pass a smaller --depth.")
    if not out.parent.is_dir():
        raise BertcError(f"-o {out}: directory {out.parent} does not exist.")
    _render(g, out, f"{op.kind} at {op.loc.primary}, {depth} op(s) each way")
    return g


def _render(g: nx.DiGraph, out: Path, title: str) -> None:
    """networkx's layered layout, one column per distance from the op, drawn by matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = nx.multipartite_layout(g, subset_key="layer", align="vertical", scale=1.0)
    columns = len({d["layer"] for _, d in g.nodes(data=True)})
    tallest = max(sum(1 for _, d in g.nodes(data=True) if d["layer"] == k)
                  for k in {d["layer"] for _, d in g.nodes(data=True)})
    fig, ax = plt.subplots(figsize=(max(6.0, 3.2 * columns), max(3.0, 1.1 * tallest + 1)), dpi=110)
    colours = ["tab:red" if d.get("centre") else ("tab:gray" if n.startswith("input:") else "tab:blue")
               for n, d in g.nodes(data=True)]
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=12, edge_color="0.55", node_size=2200)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=2200, alpha=0.18)
    nx.draw_networkx_labels(g, pos, labels=nx.get_node_attributes(g, "label"), ax=ax, font_size=7)
    nx.draw_networkx_edge_labels(g, pos, edge_labels=nx.get_edge_attributes(g, "label"), ax=ax, font_size=6,
                                 label_pos=0.5, rotate=False)
    ax.set_title(title[:140], fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
