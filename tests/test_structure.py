"""The transformer-structure analysis behind `bertc inspect` and the pruning passes."""

from __future__ import annotations

import pytest

from bertc.analysis.structure import analyze_structure

ACTIVATION = {"tf": ("gelu", "none"), "keras_hub": ("gelu", "tanh"), "hf": ("gelu", "none")}


def test_finds_every_layer(any_bert, request):
    source = request.node.callspec.params["any_bert"]
    graph = any_bert.graph()
    s = analyze_structure(graph)
    assert len(s.layers) == 2
    for layer in s.layers:
        assert not layer.problems, layer.problems
        a, f = layer.attention, layer.ffn
        assert (a.heads, a.head_size) == (4, 16)
        assert {p.in_features for p in (a.q, a.k, a.v)} == {64}
        assert (a.o.in_features, a.o.out_features) == (64, 64)
        assert all(p.bias is not None for p in (a.q, a.k, a.v, a.o))
        assert a.norm is not None and a.norm.kind == "layer_norm"
        assert f.intermediate == 128 and f.down.out_features == 64
        assert (f.activation.kind, f.activation.attrs["approximate"]) == ACTIVATION[source]
        assert f.norm is not None
    # Q, K, V and O are four different projections in each layer, and layers don't share them.
    ops = [id(getattr(layer.attention, k).op) for layer in s.layers for k in "qkvo"]
    assert len(set(ops)) == 8


def test_query_and_key_are_told_apart(any_bert):
    s = analyze_structure(any_bert.graph())
    for layer in s.layers:
        assert "query" in layer.attention.q.op.loc.primary
        assert "key" in layer.attention.k.op.loc.primary
        assert "value" in layer.attention.v.op.loc.primary


def test_summary_is_stored_on_the_graph(tf_bert):
    graph = tf_bert.graph()
    analyze_structure(graph)
    summary = graph.analyses["structure"]
    assert summary[0]["attention"]["heads"] == 4
    assert summary[1]["ffn"] == {"intermediate": 128, "activation": "gelu"}


def test_unmatched_graph_reports_why():
    import numpy as np

    from bertc.ir import Graph, TensorType

    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 4, "seq", "seq")))
    sm = g.add("softmax", [x], {"axis": -1}).result
    g.outputs["y"] = sm
    s = analyze_structure(g)
    assert len(s.layers) == 1
    assert s.layers[0].attention is None
    assert "no scores matmul" in s.layers[0].problems[0]
    del np
