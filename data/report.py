"""The run's results: metrics.json, a paper-style report.md table, and an accuracy-per-iteration SVG.

Everything is rebuilt from the eval.json files of finished stages, so a resumed run writes the
same report as an unbroken one.
"""
import json
from pathlib import Path

from data.jsonl import write_atomically


def write_text(path, text):
    write_atomically(path, text.encode("utf-8"))


def percent_correct(records) -> float:
    """Accuracy (%) of sample records {..., "correct"}: greedy accuracy, or pass@1 of sampled answers."""
    return 100 * sum(r["correct"] for r in records) / len(records)


def collect(out: Path) -> dict:
    """{stage: {split: accuracy}} for every finished stage that evaluated, in run order."""
    stages = [p.parent for p in out.glob("*/eval.json") if (p.parent / "DONE").is_file()]
    order = lambda p: (p.name != "sft-0", int(p.name.split("-")[1]) if p.name[-1].isdigit() else 99, p.name)  # noqa: E731
    return {p.name: json.loads((p / "eval.json").read_text()) for p in sorted(stages, key=order)}


def write_metrics(out: Path):
    write_text(out / "metrics.json", json.dumps(collect(out), indent=2) + "\n")


def write(out: Path, method: str, iterations: int):
    metrics = collect(out)
    write_metrics(out)
    name = {"dpo-st": "DPO-ST", "st": "ST"}[method]
    splits = ["test"] + sorted(s for s in metrics["sft-0"] if s.startswith("ood")) + ["dev"]
    rows = [("SFT", "sft-0")]
    for k in range(1, iterations + 1):
        if f"dpo-{k}" in metrics:
            rows.append((f"  after the DPO step of iteration {k}", f"dpo-{k}"))
        rows.append((f"{name} iteration {k}", f"sft-{k}"))
    rows.append(("SFT, step-matched control", "control"))
    lines = [f"# {name}: greedy accuracy (%), calculator on", "",
             "| model | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for label, stage in rows:
        if stage in metrics:
            lines.append(f"| {label} | " + " | ".join(f"{metrics[stage][s]:.1f}" for s in splits) + " |")
    lines += ["", "The control is SFT from the base model on the labeled data alone, for as many optimizer",
              f"steps as the last {name} SFT: it separates self-training from training longer.", "",
              "![accuracy per iteration](accuracy.svg)", ""]
    write_text(out / "report.md", "\n".join(lines))
    write_text(out / "accuracy.svg", svg_plot(metrics, iterations, splits[:-1]))


def svg_plot(metrics: dict, iterations: int, splits: list[str], width=520, height=300) -> str:
    """A line per split: accuracy of sft-0..sft-K against the iteration; the control as dashed lines."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    left, right, top, bottom = 50, 120, 20, 40
    values = [m[s] for m in metrics.values() for s in splits if s in m]
    y_max = max(10.0, 10 * (int(max(values)) // 10 + 1))
    x = lambda k: left + (width - left - right) * k / max(1, iterations)  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - v / y_max)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{x(iterations)}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(y_max)}" stroke="black"/>']
    for v in range(0, int(y_max) + 1, int(y_max) // 5):
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4}" text-anchor="end">{v}</text>')
    for k in range(iterations + 1):
        parts.append(f'<text x="{x(k)}" y="{y(0) + 18}" text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{x(iterations / 2)}" y="{height - 5}" text-anchor="middle">iteration (0 = SFT)</text>')
    for i, split in enumerate(splits):
        color = colors[i % len(colors)]
        points = [(x(k), y(metrics[f"sft-{k}"][split])) for k in range(iterations + 1) if f"sft-{k}" in metrics]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in points) + '"/>')
        parts.append(f'<text x="{x(iterations) + 8}" y="{points[-1][1] + 4}" fill="{color}">{split}</text>')
        if "control" in metrics:
            c = y(metrics["control"][split])
            parts.append(f'<line x1="{left}" y1="{c}" x2="{x(iterations)}" y2="{c}" stroke="{color}" '
                         f'stroke-dasharray="4 4"/>')
    return "\n".join(parts + ["</svg>", ""])
