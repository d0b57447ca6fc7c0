"""``bertc inspect``: what a model is, at a glance.

Inputs and outputs with their (symbolic) shapes, an op histogram, parameter
count and bytes, and the transformer structure found by
``bertc.analysis.structure``, each projection tied to its TF location.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .analysis.structure import Structure, analyze_structure
from .ir.graph import Graph


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def print_inspection(graph: Graph, source: str = "", console: Console | None = None) -> Structure:
    console = console or Console(width=200)
    console.print(f"[bold]{source}[/bold]" if source else "")
    io = Table(title="inputs and outputs")
    io.add_column("")
    io.add_column("name")
    io.add_column("type")
    for v in graph.inputs:
        io.add_row("input", v.name, Text(str(v.type)))  # Text: "[batch,seq]" is not markup
    for name, v in graph.outputs.items():
        io.add_row("output", name, Text(str(v.type)))
    console.print(io)

    n, b = graph.num_parameters()
    console.print(f"parameters: {n:,} ({_mb(b)}) in {sum(1 for op in graph.ops if op.kind == 'const')} constants; "
                  f"{len(graph.ops)} ops")
    hist = Table(title="op histogram")
    hist.add_column("op")
    hist.add_column("count", justify="right")
    for kind, count in graph.histogram().items():
        hist.add_row(kind, str(count))
    console.print(hist)

    structure = analyze_structure(graph)
    layers = Table(title=f"transformer structure: {len(structure.layers)} layers")
    for col in ("layer", "heads x size", "Q / K / V / O projections", "FFN", "activation", "notes"):
        layers.add_column(col)
    for layer in structure.layers:
        a, f = layer.attention, layer.ffn
        proj = "\n".join(f"{k.upper()} {getattr(a, k).op.kind} {list(getattr(a, k).kernel.shape)} "
                         f"{getattr(a, k).op.loc.primary}" for k in "qkvo") if a else "-"
        ffn = (f"{f.up.in_features}->{f.intermediate}->{f.down.out_features}\n"
               f"up {f.up.op.loc.primary}\ndown {f.down.op.loc.primary}") if f else "-"
        layers.add_row(str(layer.index), f"{a.heads} x {a.head_size}" if a else "-", Text(proj), Text(ffn),
                       f"{f.activation.kind} {f.activation.attrs.get('approximate', '')}".strip() if f else "-",
                       Text("\n".join(layer.problems)))
    console.print(layers)
    if not structure.layers:
        console.print("no attention softmax found: this does not look like a transformer encoder")
    return structure
