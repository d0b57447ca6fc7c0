"""What `bertc bench` writes: bench.json, a markdown table (bench.md) and a chart (bench.png).

Split from runtime/bench.py, which measures; this module only formats a finished report.
"""

from __future__ import annotations

import json
from pathlib import Path

def write_reports(report: dict, out: Path) -> None:
    """bench.json (everything), bench.md (the tables) and bench.png (latency against size)."""
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(report))
    plot(report, out / "bench.png")


def _headline_batch(report: dict) -> int:
    return 1 if 1 in report["settings"]["batch"] else min(report["settings"]["batch"])


def _result(a: dict, seq: int, batch: int) -> dict:
    return next((r for r in a["results"] if r["seq"] == seq and r["batch"] == batch), {"error": "not run"})


def _cpu_line(cpu: dict) -> str:
    yes = {True: "yes", False: "no"}
    line = (f"CPU: {cpu['model']} ({cpu['cores']} usable cores); AVX-512 VNNI: {yes[cpu['avx512_vnni']]}, "
            f"AVX-VNNI: {yes[cpu['avx_vnni']]}")
    return line + (f"\n\n> **Warning:** {cpu['note']}" if cpu.get("note") else "")


def markdown(report: dict) -> str:
    """The report as markdown tables: one row per artifact."""
    st, arts = report["settings"], report["artifacts"]
    b1 = _headline_batch(report)
    lines = ["# bertc bench", "", _cpu_line(report["cpu"]), "",
             f"{st['threads']} threads, {st['runs']} timed runs per shape after {st['warmup']} warm-up runs, "
             f"interleaved round-robin; random ids below {st['vocab']}.", "",
             "| artifact | backend | size (MB) | load (s) | peak RSS (MB) | runtime alone (MB) | macro-F1 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for a in arts:
        m = a["memory"]
        cells = [a["label"], a["backend"], f"{a['size_bytes'] / 1e6:.2f}", _num(m.get("load_s"), 3),
                 _num(m.get("peak_rss_mb"), 0), _num(m.get("runtime_rss_mb"), 0), _num(a["accuracy"], 4)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"## Latency at batch {b1} (ms: p50 / p90 / p99)", "",
              "| artifact | " + " | ".join(f"seq {s}" for s in st["seq"]) + " |",
              "|---|" + "---:|" * len(st["seq"])]
    for a in arts:
        cells = [_latency_cell(_result(a, s, b1)) for s in st["seq"]]
        lines.append(f"| {a['label']} | " + " | ".join(cells) + " |")
    big = [b for b in st["batch"] if b != b1]
    if big:
        cols = [(s, b) for s in st["seq"] for b in big]
        lines += ["", "## Throughput (sequences/s, from the p50 time of a batch)", "",
                  "| artifact | " + " | ".join(f"seq {s} × {b}" for s, b in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for a in arts:
            cells = [_throughput_cell(_result(a, s, b)) for s, b in cols]
            lines.append(f"| {a['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _latency_cell(r: dict) -> str:
    return "failed" if "error" in r else f"{r['p50_ms']:.2f} / {r['p90_ms']:.2f} / {r['p99_ms']:.2f}"


def _throughput_cell(r: dict) -> str:
    return "failed" if "error" in r else f"{r['throughput_seq_s']:.1f}"


def plot(report: dict, path: Path, title: str | None = None) -> None:
    """Latency (p50, first seq length) against file size: one labelled point per artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq, batch = report["settings"]["seq"][0], _headline_batch(report)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = {"tf": "tab:orange", "onnx": "tab:blue", "tflite": "tab:green"}
    points = [(a, _result(a, seq, batch)) for a in report["artifacts"]]
    points = sorted(((a, r) for a, r in points if "error" not in r), key=lambda ar: ar[0]["size_bytes"])
    for rank, (a, r) in enumerate(points):
        x, y = a["size_bytes"] / 1e6, r["p50_ms"]
        ax.scatter([x], [y], color=colors.get(a["backend"], "tab:gray"), s=40, zorder=3,
                   label=a["backend"] if a["backend"] not in ax.get_legend_handles_labels()[1] else None)
        text = a["label"] + (f"\nF1 {a['accuracy']:.3f}" if a["accuracy"] is not None else "")
        dx, dy = (8, 8) if rank % 2 == 0 else (8, -20)  # neighbours in size alternate above and below
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
    if points:
        ax.legend(title="backend", fontsize=8, title_fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no successful runs", ha="center", transform=ax.transAxes)
    ax.set_xlabel("file size (MB)")
    ax.set_ylabel(f"p50 latency (ms), seq {seq}, batch {batch}")
    ax.set_title((title or f"bertc bench: {report['cpu']['model']}")[:100], fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.margins(0.25)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
