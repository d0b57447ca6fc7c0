"""bertc's IR: graphs of typed ops, with a registry that gives each op its meaning."""

from .graph import UNKNOWN_LOC, Graph, Loc, Op, Value
from .registry import Attr, OpDef, OpError, all_op_defs, define, get_op_def
from .types import UNKNOWN, Dim, TensorType

from .. import ops as _ops  # noqa: F401,E402  (registers the core op set)

__all__ = ["Attr", "Dim", "Graph", "Loc", "Op", "OpDef", "OpError", "TensorType", "UNKNOWN",
           "UNKNOWN_LOC", "Value", "all_op_defs", "define", "get_op_def"]
