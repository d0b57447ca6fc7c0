"""bertc: a graph-rewriting compiler for TensorFlow BERT-family models.

The library API (``bertc.api``): ``bertc.compile(model, output, passes=..., targets=...)`` does what
``bertc compile`` does and returns a ``CompileResult``; ``bertc.load``, ``bertc.run_passes`` and
``bertc.lower`` are its steps.  They are imported on first use, so ``import bertc`` stays light.
"""

__version__ = "0.1.0"

_API = ("compile", "load", "run_passes", "lower", "CompileOptions", "CompileResult")
_ERRORS = ("BertcError", "VerificationFailed")
__all__ = [*_API, *_ERRORS, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import diagnostics

        return getattr(diagnostics, name)
    raise AttributeError(f"module 'bertc' has no attribute {name!r}")
