"""Connected groups of ops: the islands that dtype legalization rewrites as one.

An island is a set of member ops joined by the values they pass each other
(union-find over the producer -> user edges of joining values).  legalize_f64
joins by f64 values, legalize_narrow_ints by u8/i8/i16 ones.
"""

from __future__ import annotations

from typing import Callable

from ..ir.graph import Graph, Op, Value


def connected_ops(graph: Graph, member: Callable[[Op], bool], joins: Callable[[Value], bool]) -> list[list[Op]]:
    """The member ops, grouped: two are together when one reads a joining result of the
    other.  Groups and the ops in them keep graph order."""
    members = [op for op in graph.ops if member(op)]
    parent = {id(op): id(op) for op in members}

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for op in members:
        for r in op.results:
            if joins(r):
                for user in r.users:
                    if id(user) in parent:
                        parent[root(id(user))] = root(id(op))
    groups: dict[int, list[Op]] = {}
    for op in members:
        groups.setdefault(root(id(op)), []).append(op)
    return list(groups.values())
