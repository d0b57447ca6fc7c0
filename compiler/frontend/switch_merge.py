"""TF1 graph-mode ``tf.cond`` (Switch / Merge) whose predicate is a constant.

TF1 code switches dropout with ``tf.cond(is_training, ...)`` where
``is_training = tf.placeholder_with_default(False, [])``; frozen, that is a
Switch per branch input and a Merge of the branch outputs.  Nobody feeds the
flag at inference, so the predicate is its default and only one branch ever
runs.  ``resolve`` rewrites such a graph before import: each Switch becomes an
Identity of its data on the side the predicate takes, every node fed by the
other side is dropped (dropout's RandomUniform goes with it), and each Merge
left with one live input becomes an Identity of it.  A Switch whose predicate
the graph does not fix is left alone, and refused later as control flow.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _split(inp: str) -> tuple[str, int]:
    src, _, port = inp.lstrip("^").partition(":")
    return src, int(port or 0)


def _constant_bool(nodes: dict[str, Any], inp: str, fed: set[str]) -> bool | None:
    """The value of a predicate that is a Const, through Identity and unfed PlaceholderWithDefault."""
    from tensorflow.python.framework import tensor_util

    name, _ = _split(inp)
    while name in nodes:
        node = nodes[name]
        if node.op == "Const":
            value = np.asarray(tensor_util.MakeNdarray(node.attr["value"].tensor))
            return bool(value.reshape(())) if value.size == 1 else None
        if node.op not in ("Identity", "PlaceholderWithDefault") or name in fed:
            return None
        name, _ = _split(node.input[0])
    return None


def _order(nodes: dict[str, Any]) -> list[str]:
    """Every node, producers first (data and control edges)."""
    order, state = [], {}
    for root in nodes:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(name)
                continue
            if state.get(name) or name not in nodes:
                continue
            state[name] = 1
            stack.append((name, True))
            stack.extend((_split(i)[0], False) for i in nodes[name].input if not state.get(_split(i)[0]))
    return order


def resolve(nodes: dict[str, Any], fed: set[str]) -> dict[str, Any]:
    """``nodes`` with every Switch/Merge on a constant predicate replaced by the branch it takes."""
    if not any(n.op == "Switch" for n in nodes.values()):
        return nodes
    from tensorflow.core.framework import node_def_pb2

    dead_nodes: set[str] = set()
    dead_ports: dict[str, int] = {}  # a resolved Switch -> its dead output
    live_port: dict[str, int] = {}  # a resolved Switch -> its live output (consumers read it as port 0)
    merged: dict[str, str] = {}  # a resolved Merge -> its one live input

    def dead(inp: str) -> bool:
        src, port = _split(inp)
        return src in dead_nodes or dead_ports.get(src) == port

    for name in _order(nodes):
        node = nodes[name]
        data = [i for i in node.input if not i.startswith("^")]
        if node.op == "Switch" and dead(data[0]):
            dead_nodes.add(name)
        elif node.op == "Switch":
            pred = _constant_bool(nodes, data[1], fed)
            if pred is not None:
                live_port[name], dead_ports[name] = int(pred), 1 - int(pred)
                log.info("tf.cond Switch '%s': the predicate is always %s", name, pred)
        elif node.op == "Merge":
            live = [i for i in data if not dead(i)]
            if not live:
                dead_nodes.add(name)
            elif len(live) == 1 and len(live) < len(data):
                merged[name] = live[0]
        elif any(dead(i) for i in data):
            dead_nodes.add(name)
    if not live_port:
        return nodes

    def rename(inp: str) -> str:
        src, port = _split(inp)
        return src if src in live_port and port == live_port[src] else inp

    out: dict[str, Any] = {}
    for name, node in nodes.items():
        if name in dead_nodes:
            continue
        if name in live_port or name in merged or any(_split(i)[0] in live_port or _split(i)[0] in dead_nodes
                                                       for i in node.input):
            new = node_def_pb2.NodeDef()
            new.CopyFrom(node)
            if name in live_port or name in merged:
                src = node.input[0] if name in live_port else merged[name]
                new.op = "Identity"
                del new.input[:]
                new.input.append(rename(src))
                new.attr.clear()
                new.attr["T"].CopyFrom(node.attr["T"])
            else:
                kept = [rename(i) for i in node.input if not (i.startswith("^") and _split(i)[0] in dead_nodes)]
                del new.input[:]
                new.input.extend(kept)
            node = new
        out[name] = node
    return out
