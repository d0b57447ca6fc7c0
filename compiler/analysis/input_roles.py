"""What each model input is, by its name: token ids, an attention mask, or segment ids.

Signatures name their inputs (``input_ids``, ``attention_mask``,
``token_type_ids``, or another library's spelling); bertc recognises them by
name so that calibration, verification and importance scores feed each the
right kind of values: ``*mask*`` is a mask, ``*type*`` and ``*segment*`` are
segments, anything else is ids.
"""

from __future__ import annotations


def input_role(name: str) -> str:
    """'mask', 'segment' or 'ids' for an input named ``name``."""
    low = name.lower()
    if "mask" in low:
        return "mask"
    if "type" in low or "segment" in low:
        return "segment"
    return "ids"
