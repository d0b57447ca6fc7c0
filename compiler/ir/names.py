"""Unique names with one spelling everywhere: ``name``, then ``name.1``, ``name.2`` …

The graph's weight names, the printer's SSA names and both targets' tensor
names all use it, so a value keeps the same name in the text form, the
.onnx and the .tflite.
"""

from __future__ import annotations


class UniqueNames:
    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, name: str) -> str:
        """``name`` itself if free, else the first free ``name.k``; it is taken from now on."""
        base, k = name, 0
        while name in self.taken:
            k += 1
            name = f"{base}.{k}"
        self.taken.add(name)
        return name

    def reserve(self, name: str) -> bool:
        """Take ``name`` verbatim; False when it is already taken."""
        if name in self.taken:
            return False
        self.taken.add(name)
        return True

    def release(self, name: str) -> None:
        self.taken.discard(name)

    def __contains__(self, name: str) -> bool:
        return name in self.taken
