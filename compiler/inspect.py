"""``bertc inspect``: what a model is, at a glance.

Inputs and outputs with their (symbolic) shapes, an op histogram, parameter
count and bytes, and the transformer structure found by
``bertc.analysis.structure``, each projection tied to its TF location.

``inspection_facts`` gathers them as plain data (what ``--json`` prints);
``print_inspection`` renders the same facts as tables at the terminal's width.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .analysis.structure import Layer, Structure, analyze_structure
from .ir.graph import Graph


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def common_scope(names: list[str]) -> str:
    """The longest '/'-separated prefix all ``names`` share ('' when none, or for a single name,
    which keeps its full path): printed once, so rows show only where the names differ."""
    if len(names) < 2:
        return ""
    parts = [n.split("/") for n in names]
    shared: list[str] = []
    for segments in zip(*(p[:-1] for p in parts)):  # never swallow a whole name
        if len(set(segments)) != 1:
            break
        shared.append(segments[0])
    return "/".join(shared) + "/" if shared else ""


def _layer_facts(layer: Layer) -> dict:
    """One transformer layer as data: heads, Q/K/V/O and FFN projections with their TF locations."""
    a, f = layer.attention, layer.ffn
    facts: dict = {"index": layer.index, "problems": list(layer.problems)}
    if a:
        facts["attention"] = {"heads": a.heads, "head_size": a.head_size,
                              "projections": {k: {"op": getattr(a, k).op.kind,
                                                  "kernel_shape": list(getattr(a, k).kernel.shape),
                                                  "location": getattr(a, k).op.loc.primary} for k in "qkvo"}}
    if f:
        facts["ffn"] = {"in_features": f.up.in_features, "intermediate": f.intermediate,
                        "out_features": f.down.out_features, "up": f.up.op.loc.primary,
                        "down": f.down.op.loc.primary, "activation": f.activation.kind,
                        "approximate": f.activation.attrs.get("approximate")}
    return facts


def inspection_facts(graph: Graph, source: str = "") -> tuple[dict, Structure]:
    """Everything ``bertc inspect`` reports, as JSON-ready data, and the structure it found."""
    n, b = graph.num_parameters()
    structure = analyze_structure(graph)
    facts = {"source": source,
             "inputs": [{"name": v.name, "type": str(v.type)} for v in graph.inputs],
             "outputs": [{"name": name, "type": str(v.type)} for name, v in graph.outputs.items()],
             "parameters": n, "parameter_bytes": b,
             "constants": sum(1 for op in graph.ops if op.kind == "const"), "ops": len(graph.ops),
             "histogram": dict(graph.histogram()),
             "layers": [_layer_facts(layer) for layer in structure.layers]}
    return facts, structure


def terminal_console() -> Console:
    """stdout at the terminal's width: rich reads COLUMNS when set, else the terminal, else 80."""
    return Console()


def _projection_cell(layer: dict) -> Text:
    """Q/K/V/O rows under their shared scope, then the FFN's up/down under the same scope."""
    a, f = layer.get("attention"), layer.get("ffn")
    locs = ([p["location"] for p in a["projections"].values()] if a else []) + ([f["up"], f["down"]] if f else [])
    scope = common_scope(locs)
    short = (lambda loc: "…/" + loc[len(scope):]) if scope else (lambda loc: loc)
    lines = [f"in {scope}"] if scope else []
    if a:
        lines += [f"{k.upper()} {p['op']} {p['kernel_shape']} {short(p['location'])}"
                  for k, p in a["projections"].items()]
    if f:
        lines += [f"FFN {f['in_features']}->{f['intermediate']}->{f['out_features']}",
                  f"up {short(f['up'])}", f"down {short(f['down'])}"]
    return Text("\n".join(lines) or "-")


def _layers_table(facts: dict) -> Table:
    table = Table(title=f"transformer structure: {len(facts['layers'])} layers")
    table.add_column("layer", no_wrap=True)
    table.add_column("heads x size", no_wrap=True)
    table.add_column("projections (TF locations)", overflow="fold", ratio=3)
    table.add_column("activation")
    table.add_column("notes", overflow="fold", ratio=1)
    for layer in facts["layers"]:
        a, f = layer.get("attention"), layer.get("ffn")
        act = f"{f['activation']} {f['approximate'] or ''}".strip() if f else "-"
        table.add_row(str(layer["index"]), f"{a['heads']} x {a['head_size']}" if a else "-",
                      _projection_cell(layer), act, Text("\n".join(layer["problems"])))
    return table


def print_inspection(graph: Graph, source: str = "", console: Console | None = None) -> Structure:
    """Print the inspection tables; the structure found is returned for callers that go on."""
    console = console or terminal_console()
    facts, structure = inspection_facts(graph, source)
    if source:
        console.print(Text(source, style="bold"), overflow="fold")
    io = Table(title="inputs and outputs")
    io.add_column("")
    io.add_column("name", overflow="fold")
    io.add_column("type", overflow="fold")
    for v in facts["inputs"]:
        io.add_row("input", v["name"], Text(v["type"]))  # Text: "[batch,seq]" is not markup
    for v in facts["outputs"]:
        io.add_row("output", v["name"], Text(v["type"]))
    console.print(io)
    console.print(f"parameters: {facts['parameters']:,} ({_mb(facts['parameter_bytes'])}) in "
                  f"{facts['constants']} constants; {facts['ops']} ops")
    hist = Table(title="op histogram")
    hist.add_column("op")
    hist.add_column("count", justify="right")
    for kind, count in facts["histogram"].items():
        hist.add_row(kind, str(count))
    console.print(hist)
    console.print(_layers_table(facts))
    if not structure.layers:
        console.print("no attention softmax found: this does not look like a transformer encoder")
    return structure
