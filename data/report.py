"""The run's results: metrics.json, a paper-style report.md table, and an accuracy-per-iteration SVG.

Everything is rebuilt from the eval.json files of finished stages, so a resumed run writes the
same report as an unbroken one.
"""
import json
from pathlib import Path

from data.formats import Format
from data.jsonl import read_jsonl, write_atomically
from data.selection import calculation_path, calculations_check_out, group_by_question


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


def finished(out: Path, stage: str) -> bool:
    return (out / stage / "DONE").is_file()


def reused(out: Path, stage: str) -> bool:
    """Whether the stage was copied from another method's run (loop.py --reuse), not run here."""
    return (out / stage / "REUSED").is_file()


def duration(out: Path, stage: str) -> float:
    """How long a finished stage took in the run that ran it (its DONE file holds the duration)."""
    return float((out / stage / "DONE").read_text())


def seconds(out: Path, stage: str) -> float:
    """How long a finished stage took this run (a stage copied from another run took 0)."""
    return 0.0 if reused(out, stage) else duration(out, stage)


def iterations(out: Path, K: int) -> dict:
    """Per iteration k, what its finished stages made: the accuracies of dpo-k (dev) and sft-k, the pairs,
    the pass@1 of sft-{k-1} on the questions it sampled for pairs, the pass@1 of the pseudo-label sampler
    (the DPO model in DPO-ST, sft-{k-1} in ST), the pooled pseudo-labels, and each stage's seconds.
    Seconds differ between runs; every other number is the same for a resumed run and an unbroken one."""
    accuracy, table = collect(out), {}
    for k in range(1, K + 1):
        row = {}
        if f"dpo-{k}" in accuracy:
            row["dpo_accuracy"] = accuracy[f"dpo-{k}"]
        if f"sft-{k}" in accuracy:
            row["sft_accuracy"] = accuracy[f"sft-{k}"]
        if finished(out, f"samples-{k}"):
            row["sft_pass_at_1_pair_questions"] = percent_correct(read_jsonl(out / f"samples-{k}" / "samples.jsonl"))
        if finished(out, f"pairs-{k}"):
            row["pairs"] = len(read_jsonl(out / f"pairs-{k}" / "pairs.jsonl"))
        if finished(out, f"pseudo-{k}"):
            row["pseudo_sampler_pass_at_1"] = percent_correct(read_jsonl(out / f"pseudo-{k}" / "samples.jsonl"))
            row["pseudo_labels"] = len(read_jsonl(out / f"pseudo-{k}" / "pseudo.jsonl"))
        row["seconds"] = {stage: seconds(out, f"{stage}-{k}") for stage in ("samples", "pairs", "dpo", "pseudo", "sft")
                          if finished(out, f"{stage}-{k}")}
        table[k] = row
    return table


def preconditions(out: Path, fmt: Format) -> dict:
    """What the paper's setting has and a toy world may lack (../shared/LESSONS.md), measured on this run:
      saturation      dev accuracy of the step-matched control minus SFT's: 2 points or more and the
                      comparison with SFT is about training steps, not about self-training;
      sft_pass_at_n   the share of training questions sft-0 solves at least once in n samples (the
                      pairs' samples in DPO-ST, the pseudo-label samples in ST);
      paths           among iteration 1's pseudo-label samples (the ones that become pseudo-labels):
                      distinct valid calculation paths per solved question, and the share of correct,
                      valid samples of labeled questions whose path is not the gold rationale's (new information);
      fig6            the paper's Fig. 6: pass@1 of the DPO model and of the SFT model on the same
                      pseudo-labelled questions (DPO-ST only)."""
    result, metrics = {}, collect(out)
    if "control" in metrics and "sft-0" in metrics:
        gap = metrics["control"]["dev"] - metrics["sft-0"]["dev"]
        # A preset with a fixed step budget (sft.steps) trains the control exactly as long as SFT:
        # then the gap is one SFT's seed noise, and a gain of self-training is its data, not steps.
        same_steps = (out / "control" / "steps").read_text() == (out / "sft-0" / "steps").read_text()
        result["saturation"] = {"control_minus_sft_dev": round(gap, 2), "about_steps": gap >= 2 and not same_steps,
                                "same_steps_as_sft": same_steps}
    # sft-0's own samples of the training questions: for pairs (DPO-ST), else for pseudo-labels (ST)
    sft_stage = "samples-1" if finished(out, "samples-1") else None if finished(out, "dpo-1") else "pseudo-1"
    if sft_stage and finished(out, sft_stage):
        grouped = group_by_question(read_jsonl(out / sft_stage / "samples.jsonl"))
        n = max(len(v) for v in grouped.values())
        solved = sum(any(s["correct"] for s in v) for v in grouped.values())
        result["sft_pass_at_n"] = {"n": n, "percent": round(100 * solved / len(grouped), 2)}
    if finished(out, "pseudo-1"):
        gold = {r["id"]: calculation_path(fmt.format_answer(r["answer"]), fmt)
                for r in read_jsonl(out / "data" / "labeled.jsonl")}
        paths_per_solved, new, valid = [], 0, 0
        samples = read_jsonl(out / "pseudo-1" / "samples.jsonl")
        for rows in group_by_question(samples).values():
            good = [s for s in rows if s["correct"] and calculations_check_out(s["question"], s["completion"], fmt)]
            paths = [calculation_path(s["completion"], fmt) for s in good]
            if good:
                paths_per_solved.append(len(set(paths)))
            # Only a labeled question has a gold path to differ from (an unlabeled one has a final answer).
            with_gold = [(s, path) for s, path in zip(good, paths) if s["id"] in gold]
            valid += len(with_gold)
            new += sum(path != gold[s["id"]] for s, path in with_gold)
        result["paths"] = {"distinct_valid_per_solved_question": round(sum(paths_per_solved) / max(1, len(paths_per_solved)), 3),
                           "new_path_share_of_valid_samples": round(new / max(1, valid), 3),
                           "solved_questions": len(paths_per_solved)}
        if finished(out, "samples-1") and finished(out, "dpo-1"):
            sft_by_question = group_by_question(read_jsonl(out / "samples-1" / "samples.jsonl"))
            shared = [q for q in group_by_question(samples) if q in sft_by_question]
            if shared:
                dpo = [s for s in samples if s["id"] in sft_by_question]
                sft = [s for q in shared for s in sft_by_question[q]]
                result["fig6"] = {"dpo_pass_at_1": round(percent_correct(dpo), 2),
                                  "sft_pass_at_1": round(percent_correct(sft), 2), "questions": len(shared)}
    return result


def stage_kind(stage: str) -> str:
    """sft-2 -> sft, pseudo-1 -> pseudo; the control is an SFT."""
    return "sft" if stage == "control" else stage.split("-")[0]


def finished_records(out: Path) -> list[tuple[str, dict]]:
    """(stage, its how_it_ran.json) for every stage this run finished (not those it reused): how each ran."""
    return [(p.parent.name, json.loads(p.read_text())) for p in sorted(out.glob("*/how_it_ran.json"))
            if finished(out, p.parent.name) and not reused(out, p.parent.name)]


def peak_memory_gb(out: Path) -> float | None:
    """The largest peak resident memory (GB) any finished stage's process had reached (its how_it_ran.json;
    a stage finished by an older version, before a resume, wrote it to a file of its own, peak_rss_gb)."""
    def peak(stage, record):
        if "peak_rss_gb" in record:
            return record["peak_rss_gb"]
        old = out / stage / "peak_rss_gb"
        return float(old.read_text()) if old.is_file() else None
    peaks = [peak(stage, record) for stage, record in finished_records(out)]
    return max((p for p in peaks if p is not None), default=None)


def how_it_ran(out: Path) -> dict:
    """The machines the finished stages ran on (a resumed run may have moved) and the cores other
    processes kept busy beside them: the mean over the stages, weighted by their seconds, and the most."""
    stages = [(record, seconds(out, stage)) for stage, record in finished_records(out)]
    beside = [(r["cores_busy_beside"], s) for r, s in stages if r["cores_busy_beside"] is not None]
    total = sum(s for _, s in beside)
    return {"machines": sorted({r["machine"] for r, _ in stages}),
            "cores_busy_beside_mean": sum(b * s for b, s in beside) / total if total > 0 else None,
            "cores_busy_beside_most": max((b for b, _ in beside), default=None)}


def seconds_by_kind(metrics: dict) -> dict:
    """Every finished stage's seconds in a metrics.json (outside the iterations and in them), added up by
    kind (stage_kind): sft, samples, pairs, dpo, pseudo, data, base; the largest first."""
    stages = list(metrics["seconds"].items()) + [kv for row in metrics["iterations"].values() for kv in row["seconds"].items()]
    kinds = {}
    for stage, took in stages:
        kinds[stage_kind(stage)] = kinds.get(stage_kind(stage), 0.0) + took
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def total_seconds(metrics: dict) -> float:
    return sum(seconds_by_kind(metrics).values())


def stage_times_line(metrics: dict) -> str:
    """'N min in all: sft a min (x%), samples b min (y%), ...' (kinds under a second left out)."""
    kinds, total = seconds_by_kind(metrics), total_seconds(metrics)
    parts = ", ".join(f"{kind} {took / 60:.1f} min ({100 * took / total:.0f}%)"
                      for kind, took in kinds.items() if took >= 1)
    return f"{total / 60:.1f} min in all" + (f": {parts}" if parts else "")


def write_metrics(out: Path, fmt: Format, K: int):
    """metrics.json: accuracies of every finished stage, each iteration's numbers, the preconditions, and the
    seconds of the stages outside the iterations."""
    metrics = {"accuracy": collect(out), "iterations": iterations(out, K), "preconditions": preconditions(out, fmt),
               "seconds": {stage: seconds(out, stage) for stage in ("data", "base", "sft-0", "control")
                           if finished(out, stage)},
               "peak_memory_gb": peak_memory_gb(out), "how_it_ran": how_it_ran(out)}
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def iteration_lines(table: dict) -> list[str]:
    header = ["pairs", "SFT pass@1 (pair questions)", "pseudo sampler pass@1", "pseudo-labels"]
    keys = ["pairs", "sft_pass_at_1_pair_questions", "pseudo_sampler_pass_at_1", "pseudo_labels"]
    lines = ["| iteration | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for k, row in table.items():
        cells = [f"{row[key]:.1f}" if isinstance(row.get(key), float) else str(row.get(key, "–")) for key in keys]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines + [""]


def precondition_lines(p: dict) -> list[str]:
    lines = ["## Preconditions (what the paper's setting has; docs/results-world.md explains them)", ""]
    if "saturation" in p:
        s = p["saturation"]
        if s["same_steps_as_sft"]:
            reading = (" (the control trained as many steps as SFT: this is SFT's seed noise, and a gain over"
                       " SFT is the pseudo-labels, not steps)")
        elif s["about_steps"]:
            reading = " -- 2 or more: SFT was not saturated, so a gain over SFT is partly more steps"
        else:
            reading = " (under 2: SFT had saturated)"
        lines.append(f"- saturation: control minus SFT on dev = {s['control_minus_sft_dev']:+.1f} points" + reading)
    if "sft_pass_at_n" in p:
        lines.append(f"- SFT pass@{p['sft_pass_at_n']['n']} on the training questions: {p['sft_pass_at_n']['percent']:.1f}%")
    if "paths" in p:
        q = p["paths"]
        lines.append(f"- paths (iteration 1's pseudo-label samples): {q['distinct_valid_per_solved_question']:.2f} "
                     f"distinct valid paths per solved question; {100 * q['new_path_share_of_valid_samples']:.0f}% "
                     "of the labeled questions' valid correct samples take another path than the gold's")
    if "fig6" in p:
        f = p["fig6"]
        lines.append(f"- Fig. 6: pass@1 on the {f['questions']} pseudo-labelled questions, DPO model "
                     f"{f['dpo_pass_at_1']:.1f}% vs SFT model {f['sft_pass_at_1']:.1f}%")
    return lines + [""]


def write(out: Path, method: str, iterations: int, fmt: Format, about: str = ""):
    """report.md (the preset's about, the table, each iteration's numbers, the preconditions, the stage
    times), accuracy.svg and metrics.json."""
    everything = write_metrics(out, fmt, iterations)
    metrics = everything["accuracy"]
    name = {"dpo-st": "DPO-ST", "st": "ST"}[method]
    splits = ["test"] + sorted(s for s in metrics["sft-0"] if s.startswith("ood")) + ["dev"]
    rows = [("SFT", "sft-0")]
    for k in range(1, iterations + 1):
        if f"dpo-{k}" in metrics:
            rows.append((f"  after the DPO step of iteration {k}", f"dpo-{k}"))
        rows.append((f"{name} iteration {k}", f"sft-{k}"))
    rows.append(("SFT, step-matched control", "control"))
    lines = [f"# {name}: greedy accuracy (%), calculator on", ""] + ([about, ""] if about else []) + [
             "| model | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for label, stage in rows:
        if stage in metrics:  # the DPO step is evaluated on dev only
            lines.append(f"| {label} | " + " | ".join(f"{metrics[stage][s]:.1f}" if s in metrics[stage] else "–"
                                                      for s in splits) + " |")
    lines += ["", "The control is SFT from the base model on the labeled data alone, for as many optimizer",
              f"steps as the last {name} SFT: it separates self-training from training longer.", "",
              "![accuracy per iteration](accuracy.svg)", ""]
    lines += iteration_lines(everything["iterations"]) + precondition_lines(everything["preconditions"])
    peak = everything["peak_memory_gb"]
    lines += [f"Stage times (metrics.json has each): {stage_times_line(everything)}"
              + (f"; peak memory {peak:.2f} GB." if peak is not None else "."), ""]
    copied = [p.parent.name for p in sorted(out.glob("*/REUSED"))]
    if copied:
        origin = Path((out / copied[0] / "REUSED").read_text().strip()).parent
        lines += [f"Copied from {origin} (loop.py --reuse; not counted above): {', '.join(copied)}.", ""]
    ran = everything["how_it_ran"]
    if ran["machines"]:
        lines += ["How it ran: " + "; ".join(ran["machines"]) + "." + (
            f" Other processes kept {ran['cores_busy_beside_mean']:.1f} cores busy beside it on average"
            f" ({ran['cores_busy_beside_most']:.1f} in its busiest stage)."
            if ran["cores_busy_beside_mean"] is not None else ""), ""]
    write_text(out / "report.md", "\n".join(lines))
    title = f"{name}: greedy accuracy per iteration"
    write_text(out / "accuracy.svg", svg_plot(metrics, iterations, splits[:-1], title))


def svg_plot(metrics: dict, iterations: int, splits: list[str], title: str, width=640, height=340) -> str:
    """Accuracy (%) of sft-0..sft-K against the iteration, a line per split; the control as dashed lines
    of the same colour. The legend sits in its own column, one row per split, so labels never overlap."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    left, right, top, bottom = 60, 170, 40, 50
    values = [m[s] for m in metrics.values() for s in splits if s in m]
    y_max = max(10.0, 10 * (int(max(values, default=0)) // 10 + 1))
    x = lambda k: left + (width - left - right) * k / max(1, iterations)  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - v / y_max)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text class="title" x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{x(max(1, iterations))}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(y_max)}" stroke="black"/>']
    for v in range(0, int(y_max) + 1, int(y_max) // 5):
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4}" text-anchor="end">{v}</text>')
    for k in range(iterations + 1):
        parts.append(f'<text x="{x(k)}" y="{y(0) + 18}" text-anchor="middle">{k}</text>')
    parts.append(f'<text class="x-label" x="{x(max(1, iterations) / 2)}" y="{height - 10}" '
                 f'text-anchor="middle">iteration (0 = SFT)</text>')
    parts.append(f'<text class="y-label" x="16" y="{y(y_max / 2)}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {y(y_max / 2)})">greedy accuracy (%)</text>')
    legend_x = width - right + 20
    for i, split in enumerate(splits):
        color = colors[i % len(colors)]
        points = [(x(k), y(metrics[f"sft-{k}"][split])) for k in range(iterations + 1)
                  if split in metrics.get(f"sft-{k}", {})]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in points) + '"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in points]
        if split in metrics.get("control", {}):
            c = y(metrics["control"][split])
            parts.append(f'<line x1="{left}" y1="{c:.1f}" x2="{x(max(1, iterations))}" y2="{c:.1f}" stroke="{color}" '
                         f'stroke-dasharray="4 4"/>')
        row = top + 18 * i
        parts.append(f'<line x1="{legend_x}" y1="{row}" x2="{legend_x + 20}" y2="{row}" stroke="{color}" '
                     f'stroke-width="2"/>')
        parts.append(f'<text class="legend" x="{legend_x + 26}" y="{row + 4}" fill="{color}">{split}</text>')
    row = top + 18 * len(splits)
    parts.append(f'<line x1="{legend_x}" y1="{row}" x2="{legend_x + 20}" y2="{row}" stroke="gray" '
                 f'stroke-dasharray="4 4"/>')
    parts.append(f'<text class="legend" x="{legend_x + 26}" y="{row + 4}" fill="gray">control (dashed)</text>')
    return "\n".join(parts + ["</svg>", ""])
