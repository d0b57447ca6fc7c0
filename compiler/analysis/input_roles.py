"""What each model input is, by its name: token ids, an attention mask, or segment ids.

Signatures name their inputs (``input_ids``, ``attention_mask``,
``token_type_ids``, or another library's spelling); bertc recognises them by
name so that calibration, verification and importance scores feed each the
right kind of values: ``*position*`` is position ids (0, 1, ... per row),
``*mask*`` a mask, ``*type*`` and ``*segment*`` segments, anything else ids.
"""

from __future__ import annotations


def input_role(name: str) -> str:
    """'positions', 'mask', 'segment' or 'ids' for an input named ``name``."""
    low = name.lower()
    if "position" in low:
        return "positions"
    if "mask" in low:
        return "mask"
    if "type" in low or "segment" in low:
        return "segment"
    return "ids"
