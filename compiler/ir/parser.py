"""Parse the text form back into a ``Graph`` (the inverse of ``printer``).

Constants printed by weight name (``@name``) take their data from ``weights``,
the arrays stored beside the text.  A text may hold several ``func``s: the
regions of ops such as ``cond`` come first and are named by the ops that hold
them (``then=@cond_then``); the last ``func`` is the graph.  Errors name the
line and column.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import numpy as np

from .graph import Graph, Loc, Value
from .registry import OpError, get_op_def
from .types import DTYPES, TensorType


class ParseError(ValueError):
    def __init__(self, msg: str, line_no: int, line: str, col: int = 0) -> None:
        self.line_no, self.line, self.col = line_no, line, col
        super().__init__(f"line {line_no}: {msg}\n  {line.strip()}")


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<value>%[A-Za-z0-9_.\-]+)
  | (?P<weight>@"(?:[^"\\]|\\.)*"|@[A-Za-z_][A-Za-z0-9_./:\-]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf)(?![A-Za-z_]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<arrow>->)
  | (?P<punct>[=,{}\[\]():<>*?])
""", re.VERBOSE)


class _Line:
    """A token cursor over one line of text."""

    def __init__(self, text: str, line_no: int) -> None:
        self.text, self.line_no = text, line_no
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise ParseError(f"unexpected character {text[pos]!r}", line_no, text, pos)
            if m.lastgroup != "ws":
                self.toks.append((m.lastgroup, m.group(), pos))
            pos = m.end()
        self.i = 0

    def error(self, msg: str) -> ParseError:
        col = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        return ParseError(msg, self.line_no, self.text, col)

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, v, _ = self.toks[self.i]
        return (value is None or v == value) and (kind is None or k == kind)

    def next(self, kind: str | None = None, value: str | None = None) -> str:
        if self.i >= len(self.toks):
            raise self.error(f"expected {value or kind}, found end of line")
        k, v, _ = self.toks[self.i]
        if (kind and k != kind) or (value and v != value):
            raise self.error(f"expected {value or kind}, found {v!r}")
        self.i += 1
        return v

    def accept(self, value: str) -> bool:
        if self.peek(value):
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.toks)


# ------------------------------------------------------------------ pieces
def _parse_type(c: _Line) -> TensorType:
    dtype = c.next("ident")
    if dtype not in DTYPES:
        raise c.error(f"unknown dtype {dtype!r}")
    c.next(value="[")
    dims: list[Any] = []
    while not c.accept("]"):
        if dims:
            c.next(value=",")
        dims.append(_parse_dim(c))
    return TensorType(dtype, tuple(dims))


def _parse_dim(c: _Line):
    if c.accept("?"):
        return "?"
    parts = []
    while True:
        k = "number" if c.peek(kind="number") else "ident"
        parts.append(c.next(k))
        if not c.accept("*"):
            break
    if len(parts) == 1 and parts[0].lstrip("-").isdigit():
        return int(parts[0])
    from .types import dim_prod

    return dim_prod(int(p) if p.isdigit() else p for p in parts)


def _parse_scalar(c: _Line):
    if c.peek(kind="number"):
        text = c.next()
        if text in ("inf", "-inf"):
            return float(text)
        return float(text) if any(ch in text for ch in ".eE") else int(text)
    if c.peek(kind="string"):
        return json.loads(c.next())
    word = c.next("ident")
    if word in ("true", "false"):
        return word == "true"
    if word == "nan":
        return float("nan")
    raise c.error(f"unexpected {word!r}")


def _parse_literal(c: _Line):
    if c.accept("["):
        items = []
        while not c.accept("]"):
            if items:
                c.next(value=",")
            items.append(_parse_literal(c))
        return items
    if c.peek("dense"):
        c.next()
        c.next(value="<")
        body = _parse_literal(c)
        c.next(value=">")
        return ("dense", body)
    return _parse_scalar(c)


def _parse_loc(c: _Line) -> Loc:
    c.next(value="loc")
    c.next(value="(")
    if c.accept("fused"):
        scope = json.loads(c.next("string")) if c.peek(kind="string") else ""  # loc(fused "a/b/"["c", "d"])
        c.next(value="[")
        names = []
        while not c.accept("]"):
            if names:
                c.next(value=",")
            names.append(scope + json.loads(c.next("string")))
        loc = Loc(tuple(names))
    else:
        loc = Loc.of(json.loads(c.next("string")))
    c.next(value=")")
    return loc


def _key(c: _Line) -> str:
    return json.loads(c.next()) if c.peek(kind="string") else c.next("ident")


# ------------------------------------------------------------------ the graph
def parse_graph(text: str, weights: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Parse a graph: its regions' ``func``s, then its own.  ``weights`` supplies the data
    of ``@name`` constants."""
    weights = weights or {}
    funcs: dict[str, Graph] = {}  # the funcs parsed so far, by name: regions for later ops
    graph: Graph | None = None
    values: dict[str, Value] = {}
    out_names: list[str] = []
    analyses: dict[str, Any] = {}
    for line_no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("//"):
            continue
        if stripped.startswith("#") and graph is None and not funcs:
            key, _, js = stripped[1:].partition("=")
            analyses[key.strip()] = json.loads(js)
            continue
        c = _Line(stripped, line_no)
        if graph is None:
            if not c.peek("func"):
                raise c.error("expected 'func'")
            values, out_names = {}, []
            graph = _parse_header(c, values, out_names)
            continue
        if c.peek("}"):
            if graph.name in funcs:
                raise c.error(f"func @{graph.name} is defined twice")
            funcs[graph.name] = graph
            graph = None
            continue
        if c.peek("return"):
            _parse_return(c, graph, values, out_names)
            continue
        _parse_op(c, graph, values, weights, funcs)
    if graph is not None:
        raise ParseError("missing closing '}'", len(text.splitlines()), text.splitlines()[-1])
    if not funcs:
        raise ParseError("no 'func' found", 1, text.splitlines()[0] if text else "")
    main = list(funcs.values())[-1]
    main.analyses.update(analyses)
    used = {id(r) for r in main.regions()}
    for name, g in funcs.items():
        if g is not main and id(g) not in used:
            raise ParseError(f"func @{name} is not the graph (the last func) nor a region any op of it holds",
                             1, text.splitlines()[0])
    for region in [op.attrs[k] for op in main.ops for k, v in op.attrs.items() if isinstance(v, Graph)]:
        main.adopt(region)
    return main


def _parse_header(c: _Line, values: dict[str, Value], out_names: list[str]) -> Graph:
    """The ``func @name(%in: type, ...) -> (outs) {`` line."""
    c.next(value="func")
    name = c.next("weight")[1:]
    graph = Graph(json.loads(name) if name.startswith('"') else name)
    c.next(value="(")
    while not c.accept(")"):
        if graph.inputs:
            c.next(value=",")
        vname = c.next("value")[1:]
        c.next(value=":")
        values[vname] = graph.add_input(vname, _parse_type(c))
    c.next("arrow")
    c.next(value="(")
    while not c.accept(")"):
        if out_names:
            c.next(value=",")
        out_names.append(_key(c))
    c.next(value="{")
    return graph


def _parse_return(c: _Line, graph: Graph, values: dict[str, Value], out_names: list[str]) -> None:
    c.next(value="return")
    while not c.done():
        if graph.outputs:
            c.next(value=",")
        key = _key(c)
        c.next(value="=")
        graph.outputs[key] = _lookup(c, values)
    if list(graph.outputs) != out_names:
        raise c.error(f"return names {list(graph.outputs)} differ from the header's {out_names}")


def _lookup(c: _Line, values: dict[str, Value]) -> Value:
    ref = c.next("value")[1:]
    if ref not in values:
        raise c.error(f"use of undefined value %{ref}")
    return values[ref]


def _parse_op(c: _Line, graph: Graph, values: dict[str, Value], weights: Mapping[str, np.ndarray],
              funcs: Mapping[str, Graph]) -> None:
    names = [c.next("value")[1:]]
    while c.accept(","):
        names.append(c.next("value")[1:])
    c.next(value="=")
    kind = c.next("ident")
    try:
        get_op_def(kind)
    except OpError as e:
        raise c.error(str(e)) from None
    operands: list[Value] = []
    attrs: dict[str, Any] = {}
    if kind == "const":
        if c.peek(kind="weight"):
            wname = c.next()[1:]
            wname = json.loads(wname) if wname.startswith('"') else wname
            if wname not in weights:
                raise c.error(f"weight @{wname} is not in the weights stored beside this file")
            attrs = {"value": np.asarray(weights[wname]), "name": wname}
        else:
            lit = _parse_literal(c)
            if not (isinstance(lit, tuple) and lit[0] == "dense"):
                raise c.error("const takes @weight_name or dense<...>")
            attrs = {"value": lit[1], "name": names[0]}
    else:
        while c.peek(kind="value"):
            operands.append(_lookup(c, values))
            if not c.accept(","):
                break
        if c.accept("{"):
            while not c.accept("}"):
                if attrs:
                    c.next(value=",")
                key = c.next("ident")
                c.next(value="=")
                if c.peek(kind="weight"):  # a region: a func defined above
                    ref = c.next()[1:]
                    ref = json.loads(ref) if ref.startswith('"') else ref
                    if ref not in funcs:
                        raise c.error(f"func @{ref} is not defined above this op")
                    attrs[key] = funcs[ref]
                    continue
                lit = _parse_literal(c)
                attrs[key] = np.asarray(lit[1]) if isinstance(lit, tuple) else lit
    c.next(value=":")
    if c.accept("("):
        types = [_parse_type(c)]
        while c.accept(","):
            types.append(_parse_type(c))
        c.next(value=")")
    else:
        types = [_parse_type(c)]
    loc = _parse_loc(c) if c.peek("loc") else Loc(())
    if not c.done():
        raise c.error("unexpected text after the op")
    if kind == "const" and not isinstance(attrs["value"], np.ndarray):
        attrs["value"] = np.asarray(attrs["value"], dtype=DTYPES[types[0].dtype]).reshape(
            [int(d) for d in types[0].shape])
        attrs["name"] = graph.unique_const_name(names[0])
    elif kind == "const":
        graph._const_names.reserve(attrs["name"])
    if len(types) != len(names):
        raise c.error(f"{len(names)} results but {len(types)} types")
    try:
        op = graph.add(kind, operands, attrs, loc, result_types=types)
    except OpError as e:
        raise c.error(str(e)) from None
    for n, r in zip(names, op.results):
        if n in values:
            raise c.error(f"%{n} is defined twice")
        r.name = n
        values[n] = r


def copy_graph(graph: Graph) -> Graph:
    """An independent copy of ``graph`` by a text round trip.  Weight arrays are shared, not
    copied (passes replace arrays, never edit them in place); analyses that print with the
    text (calibration ranges) come back too."""
    from .printer import print_graph

    return parse_graph(print_graph(graph), graph.weights())
