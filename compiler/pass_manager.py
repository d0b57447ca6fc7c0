"""Passes, their registry, pipeline strings, and the pass manager.

A pass is a frozen dataclass whose fields are its options.  It is registered
under the name of the file it lives in (``passes/fold_constants.py`` →
``fold_constants``) unless it sets ``name``.  Pipelines are strings:

    "fold_constants,prune_heads{ratio=0.25,criterion=magnitude}"

The manager verifies the graph after every pass, times each pass, can dump the
IR after each one, and on failure names the pass, the op, its location and the
passes that ran before it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import pkgutil
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from .diagnostics import BertcError, did_you_mean
from .ir.graph import Graph, Op
from .ir.registry import OpError
from .ir.verifier import VerifyError, verify

log = logging.getLogger(__name__)


@dataclass
class PassContext:
    """What passes may need beyond the graph: calibration data, a report to add to.

    ``calib`` is the user's data (``--calib``), or None.  ``random_data(graph, n, seq)``
    makes random but valid token ids when there is none; ``runner(graph, values,
    reference)`` runs a graph batch by batch and shows each of ``values`` to an
    observer (onnxruntime, or the reference interpreter).  The driver may hand in its
    own; by default they come from ``bertc.runtime``, so that passes and analyses never
    reach into the runtime themselves.
    """

    calib: Any = None
    report: dict[str, Any] = field(default_factory=dict)
    random_data: Callable[..., Any] | None = None
    runner: Callable[..., Any] | None = None

    def graph_runner(self, graph: Graph, values: list, reference: bool = False):
        """An engine with ``run(feeds, observe)``, ``engine`` and ``reason`` (see runtime.ort_runner)."""
        make = self.runner or _ort_or_reference_runner
        return make(graph, values, reference)

    def calibration(self, graph: Graph, n: int = 32, seq: int = 64):
        """Calibration data bound to ``graph``: the user's, or ``n`` random sequences of up to
        ``seq`` tokens (its ``random`` flag then says so)."""
        if self.calib is not None:
            return self.calib.bind(graph)
        make = self.random_data or _random_token_ids
        return make(graph, n=n, seq=seq)


def _ort_or_reference_runner(graph: Graph, values: list, reference: bool):
    from .runtime.ort_runner import OrtGraphRunner

    if reference:
        return OrtGraphRunner.reference(graph, values, "engine=reference")
    return OrtGraphRunner(graph, values)


def _random_token_ids(graph: Graph, n: int, seq: int):
    """The default stand-in for calibration data (the CLI's driver hands in the same)."""
    from .runtime.calib import random_calibration

    return random_calibration(graph, n=n, seq=seq)


@dataclass(frozen=True)
class Pass:
    """Base class.  Subclasses are frozen dataclasses; ``run`` says whether it changed the graph."""

    name: ClassVar[str] = ""
    # Whether the pass also rewrites the graphs ops hold (cond's branches).  Local rewrites
    # (folding, dce) say so, and every legalization pass (``legalizes``) does: an op a target
    # lacks is rewritten wherever it is.  Passes that read the model as a whole (pruning,
    # quantization, calibration) see a cond as one opaque op.
    in_regions: ClassVar[bool] = False

    @property
    def rewrites_regions(self) -> bool:
        return self.in_regions or bool(getattr(self, "legalizes", ()) or getattr(self, "legalizes_dtypes", ()))

    @property
    def uses_calibration(self) -> bool:
        """Whether this pass reads calibration data (``--calib``; random token ids stand in without it)."""
        return False

    def run(self, graph: Graph, ctx: PassContext) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def check_graph(self, graph: Graph) -> None:
        """Refuse options this model cannot take (raise BertcError) before any pass runs.

        A compile calls it for every pass right after the import, so a bad option
        fails in seconds, not after the slow passes before it.  Default: nothing to check.
        """

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    def spec(self) -> str:
        """This pass as pipeline text, with the options that differ from the defaults; a string
        option holding ',', ';', braces or quotes is quoted, so the text parses back."""
        opts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v == f.default:
                continue
            if isinstance(v, str) and any(c in v for c in ",;{}'\""):
                v = '"' + v + '"'
            opts.append(f"{f.name}={v}")
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


_PASSES: dict[str, type[Pass]] = {}
_DISCOVERED = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: register a pass under its ``name`` or its module's file name."""
    if not cls.__dict__.get("name"):
        cls.name = cls.__module__.rsplit(".", 1)[-1]
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"pass {cls.__name__} must be a frozen dataclass")
    _PASSES[cls.name] = cls
    return cls


def _discover() -> None:
    """Import every module of ``bertc.passes`` and entry points in group ``bertc.passes``."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    from . import passes as pkg  # bertc.passes, which lives in passes/

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="bertc.passes"):
            ep.load()
    except Exception as e:  # a broken third-party plugin must not break bertc
        log.warning("could not load a bertc.passes entry point: %s", e)


def all_passes() -> dict[str, type[Pass]]:
    _discover()
    return dict(sorted(_PASSES.items()))


def load_plugin(path: str | Path, override: Iterable[str] = ()) -> list[str]:
    """Import a user's ``my_passes.py`` so its ``@register_pass`` classes join the registry.

    A plugin pass may not take the name of a pass already registered (a built-in, or
    another plugin's) unless that name is in ``override`` (``--override NAME``): a
    silent replacement would change every pipeline that names it, canonicalization
    included.  A refused plugin leaves the registry as it was.
    """
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"plugin file {path} does not exist.", "Pass --plugin the path of a .py file.")
    before = dict(all_passes())
    name = f"bertc_plugin_{path.stem}"
    previous = getattr(sys.modules.get(name), "__file__", None)
    reloading = previous is not None and Path(previous).resolve() == path.resolve()
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        _PASSES.clear()
        _PASSES.update(before)
        raise BertcError(f"plugin {path} failed to import: {type(e).__name__}: {e}") from e
    replaced = sorted(n for n, cls in before.items() if _PASSES.get(n) is not cls
                      and not (reloading and cls.__module__ == name))  # the same file loaded again
    refused = [n for n in replaced if n not in set(override)]
    if refused:
        _PASSES.clear()
        _PASSES.update(before)
        shown = ", ".join(f"'{n}'" for n in refused)
        raise BertcError(f"plugin {path}: its pass {shown} has the name of a pass bertc already has "
                         f"({before[refused[0]].__module__}).",
                         f"Rename the plugin's pass, or pass --override {refused[0]} to replace the existing one "
                         "in every pipeline that names it.")
    for n in replaced:
        log.warning("plugin %s replaces the pass '%s' (--override)", path, n)
    return sorted(set(_PASSES) - set(before)) + replaced


# ------------------------------------------------------------------ pipelines
def split_pipeline(text: str) -> list[tuple[str, str]]:
    """'a,b{x=1,y=2}' -> [('a', ''), ('b', 'x=1,y=2')], honouring braces."""
    items: list[tuple[str, str]] = []
    depth, cur = 0, ""
    for ch in text + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise BertcError(f"pipeline {text!r} has an unmatched '}}'.")
        if ch == "," and depth == 0:
            cur = cur.strip()
            if cur:
                name, _, opts = cur.partition("{")
                if opts and not opts.endswith("}"):
                    raise BertcError(f"pipeline item {cur!r}: options must close with '}}'.")
                items.append((name.strip(), opts[:-1].strip()))
            cur = ""
        else:
            cur += ch
    if depth:
        raise BertcError(f"pipeline {text!r} has an unclosed '{{'.")
    return items


def _convert(value: str, typ: Any, pass_name: str, opt: str) -> Any:
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value.lower() in ("none", ""):
            return None
        typ = args[0]
    if typing.get_origin(typ) is typing.Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            raise BertcError(f"option {opt}={value!r} of pass '{pass_name}' must be one of "
                             f"{', '.join(map(str, choices))}.{did_you_mean(value, map(str, choices))}")
        return value
    try:
        if typ is bool:
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if typ in (int, float, str):
            return typ(value)
    except ValueError:
        raise BertcError(f"option {opt}={value!r} of pass '{pass_name}' should be "
                         f"{getattr(typ, '__name__', typ)}.") from None
    return value


# Named pipelines usable inside --passes.
PRESETS = {
    # onnxruntime contrib kernels (exact); run after pruning and quantization.  fuse_attention
    # (MultiHeadAttention) is opt-in: measured 2-7% slower on onnxruntime 1.32's CPU kernel
    # (docs/performance.md)
    "ort_fusions": "fuse_skip_layer_norm,fuse_bias_gelu",
}


def parse_pipeline(text: str) -> list[Pass]:
    """Build pass instances from a pipeline string; unknown names and options say what exists."""
    registry = all_passes()
    out: list[Pass] = []
    for name, opts in split_pipeline(text):
        if name in PRESETS and not opts:
            out.extend(parse_pipeline(PRESETS[name]))
            continue
        if name not in registry:
            raise BertcError(f"unknown pass '{name}'.{did_you_mean(name, [*registry, *PRESETS])}",
                             f"Known passes: {', '.join(registry)}; presets: {', '.join(PRESETS)}. "
                             "`bertc passes` describes each.")
        cls = registry[name]
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in _split_options(opts))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq:
                raise BertcError(f"option '{item}' of pass '{name}' needs a value: {key}=VALUE.")
            if key not in fields:
                valid = ", ".join(fields) or "none"
                raise BertcError(f"pass '{name}' has no option '{key}'.{did_you_mean(key, fields)}",
                                 f"Its options: {valid}.")
            kwargs[key] = _convert(value.strip(), hints[key], name, key)
        try:
            out.append(cls(**kwargs))
        except (TypeError, ValueError) as e:
            raise BertcError(f"pass '{name}': {e}") from None
    return out


def _split_options(opts: str) -> list[str]:
    """Options split on commas outside quotes and nested braces (keep="0:1,2;3:4" works)."""
    parts, cur, quote, depth = [], "", "", 0
    for ch in opts:
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur += ch
            continue
        if ch in "\"'":
            quote = ch
            continue
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts


# ------------------------------------------------------------------ running
@dataclass
class PassRecord:
    name: str
    spec: str
    changed: bool
    seconds: float
    ops_before: int
    ops_after: int


class PassFailed(BertcError):
    """A pass raised or left an invalid graph."""


DUMP_STORE = "weights"  # --dump-ir DIR's folder of constants, one <sha1>.npy each


class PassManager:
    """Runs passes in order, verifying after each, with timing and optional IR dumps."""

    def __init__(self, passes: list[Pass], *, verify_each: bool = True, dump_dir: Path | None = None,
                 print_after: bool = False) -> None:
        self.passes = passes
        self.verify_each = verify_each
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.print_after = print_after
        self.records: list[PassRecord] = []
        self._dumps = 0
        # Called as on_pass(index, count, pass) before each pass runs (compile's progress display).
        self.on_pass: Callable[[int, int, Pass], None] | None = None

    def dump(self, graph: Graph, label: str) -> Path | None:
        """Write ``NN_label.bir`` to the dump folder; its weights go to the folder's shared
        ``weights/`` store, so each constant is written once however many passes keep it."""
        if self.dump_dir is None:
            return None
        from .ir.serialize import save

        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"{self._dumps:02d}_{label}.bir"
        self._dumps += 1
        save(graph, path, store=self.dump_dir / DUMP_STORE)
        return path

    def run(self, graph: Graph, ctx: PassContext | None = None) -> list[PassRecord]:
        return self._run(graph, ctx or PassContext(), 0)

    def run_more(self, graph: Graph, passes: list[Pass], ctx: PassContext | None = None) -> list[PassRecord]:
        """Append passes chosen after seeing the graph (legalization) and run just those."""
        start = len(self.passes)
        self.passes = self.passes + list(passes)
        return self._run(graph, ctx or PassContext(), start)

    def _run(self, graph: Graph, ctx: PassContext, start: int) -> list[PassRecord]:
        if self._dumps == 0:
            self.dump(graph, "import")
        for i in range(start, len(self.passes)):
            p = self.passes[i]
            if self.on_pass is not None:
                self.on_pass(i, len(self.passes), p)
            before = len(graph.ops)
            t0 = time.perf_counter()
            try:
                changed = bool(p.run(graph, ctx))
                if p.rewrites_regions:
                    for region in list(graph.regions()):
                        changed = bool(p.run(region, ctx)) or changed
                if self.verify_each:
                    verify(graph)
            except BertcError as e:
                raise PassFailed(self._where(i, e.message), e.hint) from e
            except (VerifyError, OpError) as e:
                raise PassFailed(self._where(i, f"left an invalid graph: {e}"),
                                 "This is a bug in the pass; --dump-ir DIR shows the IR it received.") from e
            except Exception as e:
                op = getattr(e, "op", None)
                at = f" at {op.kind} {op.loc}" if isinstance(op, Op) else ""
                raise PassFailed(self._where(i, f"raised {type(e).__name__}: {e}{at}"),
                                 "This is a bug in the pass; --dump-ir DIR shows the IR it received.") from e
            dt = time.perf_counter() - t0
            self.records.append(PassRecord(p.name, p.spec(), changed, dt, before, len(graph.ops)))
            log.info("pass %s: %s, %.3fs, %d -> %d ops", p.spec(), "changed" if changed else "no change",
                     dt, before, len(graph.ops))
            self.dump(graph, p.name)
            if self.print_after:
                from .ir.printer import print_graph

                sys.stderr.write(f"// ----- IR after {p.spec()}\n{print_graph(graph)}")
        return self.records

    def _where(self, i: int, msg: str) -> str:
        ran = ", ".join(p.spec() for p in self.passes[:i]) or "none"
        return f"pass '{self.passes[i].spec()}' (#{i + 1} of {len(self.passes)}; ran before it: {ran}) {msg}"
