"""Write docs/op-reference.md from the op registry (tests check it is current).

    python docs/gen_op_reference.py
"""

from __future__ import annotations

from pathlib import Path

from bertc.ir import all_op_defs
from bertc.ir.registry import REQUIRED

OUT = Path(__file__).with_name("op-reference.md")


def render() -> str:
    lines = ["# Core op reference", "",
             "Generated from the op registry (`compiler/ops/*.py`) by `python docs/gen_op_reference.py`.",
             "Every op has a numpy reference kernel; the reference interpreter runs any graph with them.",
             "Operands ending in `?` are optional, `*` variadic.", "",
             "| op | operands | attributes | meaning |", "|---|---|---|---|"]
    for name, d in all_op_defs().items():
        attrs = ", ".join(f"{k}" + ("" if a.default is REQUIRED else f"={a.default!r}") for k, a in d.attrs.items())
        doc = d.doc.replace("|", "\\|")  # a pipe would end the table cell
        lines.append(f"| `{name}` | {', '.join(d.operands) or '-'} | {attrs or '-'} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
