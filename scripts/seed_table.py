"""Per-seed and mean tables over finished loop runs (the README's results come from this).

    python scripts/seed_table.py runs/tiny-llama-dpo-st-seed0 runs/tiny-llama-dpo-st-seed1 ... [--split test]

For test and dev: one row per run (method, seed) with SFT, each iteration and the step-matched
control, then the mean and standard deviation over seeds per method, and, where both methods ran
with the same seeds, DPO-ST minus ST per seed (its spread is the point: seeds differ a lot here).
With two or more such seeds, a 95% interval for that difference (Student's t). The OOD sets, which
only SFT, the last iteration and the control evaluate, share one table.
Then, per iteration, the mechanism the paper's Fig. 6 shows: the pass@1 of the samples taken for
pseudo-labels (DPO-ST samples from its DPO model, ST from its SFT model) and the size of the pooled
pseudo-label set that came out of them; each run's preconditions; and how each ran (its minutes, peak
memory, machine and threads, and the cores other processes kept busy beside it; metrics.json).
With --svg PATH it also draws each method's mean over seeds on the first split against the iteration
(the README's plot), the mean control dashed, with report.py's plot.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import read_jsonl  # noqa: E402
from data.report import collect, percent_correct, svg_plot, total_seconds, write_text  # noqa: E402

NAMES = {"dpo-st": "DPO-ST", "st": "ST"}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


def load_runs(folders):
    runs = []
    for folder in map(Path, folders):
        config = json.loads((folder / "config.json").read_text())
        metrics = collect(folder)
        if "control" not in metrics:
            raise SystemExit(f"seed_table.py: error: {folder} is not finished (no control stage)")
        runs.append({"method": config["method"], "seed": config["seed"], "K": config["iterations"],
                     "metrics": metrics, "folder": folder})
    return runs


def columns(run):
    return ["sft-0"] + [f"sft-{k}" for k in range(1, run["K"] + 1)] + ["control"]


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def heading(title, header):
    """A markdown section title and the first two lines of its table."""
    return [f"### {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]


def table(runs, split):
    K = max(run["K"] for run in runs)
    lines = heading(split, ["run", "SFT"] + [f"iter {k}" for k in range(1, K + 1)] + ["control (step-matched)"])
    for run in runs:
        cells = [f"{run['metrics'][stage][split]:.1f}" if split in run["metrics"][stage] else "–"
                 for stage in columns(run)]  # OOD sets are evaluated at SFT, the last iteration and the control
        lines.append(f"| {NAMES[run['method']]} seed {run['seed']} | " + " | ".join(cells) + " |")
    for method in NAMES:
        group = [run for run in runs if run["method"] == method and run["K"] == K]
        if len(group) > 1:  # one seed's mean is its row
            cells = [mean_sd([run["metrics"][stage][split] for run in group]) if split in group[0]["metrics"][stage]
                     else "–" for stage in columns(group[0])]
            lines.append(f"| **{NAMES[method]} mean ± sd ({len(group)} seeds)** | " + " | ".join(cells) + " |")
    by_seed = {(run["method"], run["seed"]): run["metrics"] for run in runs}
    seeds = sorted(seed for method, seed in by_seed if method == "dpo-st" and ("st", seed) in by_seed)
    if seeds:
        diffs = [by_seed["dpo-st", s][f"sft-{K}"][split] - by_seed["st", s][f"sft-{K}"][split] for s in seeds]
        lines += ["", f"DPO-ST minus ST after iteration {K}, per seed {seeds}: " + ", ".join(f"{d:+.1f}" for d in diffs)]
        if len(diffs) > 1:
            lines[-1] += f" (mean {statistics.mean(diffs):+.1f})"
        if 2 <= len(diffs) <= 10:
            half = T_975[len(diffs) - 1] * statistics.stdev(diffs) / len(diffs) ** 0.5
            lines[-1] += f"; 95% interval {statistics.mean(diffs) - half:+.1f} to {statistics.mean(diffs) + half:+.1f}"
    return "\n".join(lines + [""])


def ood_table(runs, splits):
    """The OOD sets side by side, each as SFT -> the last iteration (the control): the only stages that
    evaluate them. With two or more seeds of a method, the means of those three."""
    K = max(run["K"] for run in runs)
    lines = heading(f"OOD sets: SFT -> iteration {K} (step-matched control)", ["run"] + splits)

    def cell(metrics_of_seeds, split, last):
        sft, at_last, control = (statistics.mean(m[stage][split] for m in metrics_of_seeds)
                                 for stage in ("sft-0", f"sft-{last}", "control"))
        return f"{sft:.1f} -> {at_last:.1f} ({control:.1f})"

    for run in runs:  # a run of fewer iterations shows its own last one
        lines.append(f"| {NAMES[run['method']]} seed {run['seed']} | "
                     + " | ".join(cell([run["metrics"]], split, run["K"]) for split in splits) + " |")
    for method in NAMES:
        group = [run["metrics"] for run in runs if run["method"] == method and run["K"] == K]
        if len(group) > 1:
            lines.append(f"| **{NAMES[method]} mean ({len(group)} seeds)** | "
                         + " | ".join(cell(group, split, K) for split in splits) + " |")
    return "\n".join(lines + [""])


def pseudo_label_table(runs):
    K = max(run["K"] for run in runs)
    lines = heading("pseudo-labels: pass@1 of the pseudo-label samples (%) / pooled pseudo-labels",
                    ["run"] + [f"iter {k}" for k in range(1, K + 1)])
    for run in runs:
        cells = []
        for k in range(1, run["K"] + 1):
            samples = read_jsonl(run["folder"] / f"pseudo-{k}" / "samples.jsonl")
            pool = read_jsonl(run["folder"] / f"pseudo-{k}" / "pseudo.jsonl")
            cells.append(f"{percent_correct(samples):.1f} / {len(pool)}")
        lines.append(f"| {NAMES[run['method']]} seed {run['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def precondition_table(runs):
    lines = heading("preconditions (metrics.json)", ["run", "control − SFT, dev", "SFT pass@n, train",
                                                     "valid paths / solved", "new-path share", "Fig. 6: DPO vs SFT pass@1"])
    for run in runs:
        path = run["folder"] / "metrics.json"
        p = json.loads(path.read_text()).get("preconditions", {}) if path.is_file() else {}
        if not p:
            continue
        paths, fig6, n = p.get("paths", {}), p.get("fig6"), p.get("sft_pass_at_n", {})
        cells = [f"{p['saturation']['control_minus_sft_dev']:+.1f}" if "saturation" in p else "–",
                 f"{n['percent']:.1f} (n={n['n']})" if n else "–",
                 f"{paths['distinct_valid_per_solved_question']:.2f}" if paths else "–",
                 f"{paths['new_path_share_of_valid_samples']:.2f}" if paths else "–",
                 f"{fig6['dpo_pass_at_1']:.1f} vs {fig6['sft_pass_at_1']:.1f}" if fig6 else "–"]
        lines.append(f"| {NAMES[run['method']]} seed {run['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def how_they_ran_table(runs):
    lines = heading("how each run ran (metrics.json)", ["run", "minutes", "peak GB", "machine",
                                                        "cores busy beside it (mean, most)"])
    for run in runs:
        path = run["folder"] / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        minutes = total_seconds(m) / 60
        ran = m.get("how_it_ran", {})  # runs before the stages recorded it have none
        beside = (f"{ran['cores_busy_beside_mean']:.1f}, {ran['cores_busy_beside_most']:.1f}"
                  if ran.get("cores_busy_beside_mean") is not None else "–")
        cells = [f"{minutes:.1f}", f"{m['peak_memory_gb']:.2f}" if m.get("peak_memory_gb") else "–",
                 "; ".join(ran.get("machines", [])) or "–", beside]
        lines.append(f"| {NAMES[run['method']]} seed {run['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def mean_plot(runs, split) -> str:
    """One line per method: its mean accuracy over seeds at sft-0..sft-K, and the mean control."""
    K = max(run["K"] for run in runs)
    means, labels = {stage: {} for stage in columns(next(run for run in runs if run["K"] == K))}, []
    for method in NAMES:
        own = [run for run in runs if run["method"] == method and run["K"] == K]
        if not own:
            continue
        label = f"{NAMES[method]} ({len(own)} seed{'s' if len(own) > 1 else ''})"
        labels.append(label)
        for stage in means:
            if all(split in run["metrics"][stage] for run in own):
                means[stage][label] = statistics.mean(run["metrics"][stage][split] for run in own)
    return svg_plot(means, K, labels, f"{split}: mean over seeds")


def main():
    ap = argparse.ArgumentParser(description="Per-seed and mean accuracy tables over finished runs.")
    ap.add_argument("runs", nargs="+", help="run folders written by loop.py")
    ap.add_argument("--split", action="append", help="only these splits, each in its own table (default: "
                    "every split: test and dev each in a table, the OOD sets together in one)")
    ap.add_argument("--svg", help="also write each method's mean over seeds on the first split here (an SVG file)")
    args = ap.parse_args()
    if args.svg and not Path(args.svg).resolve().parent.is_dir():
        ap.error(f"argument --svg: {args.svg}: its folder does not exist")
    runs = sorted(load_runs(args.runs), key=lambda run: (run["method"] != "dpo-st", run["seed"]))
    every = ["test"] + sorted(s for s in runs[0]["metrics"]["sft-0"] if s != "test")
    splits = args.split or [s for s in every if not s.startswith("ood-")]
    print("Greedy accuracy (%), calculator on.\n")
    for split in splits:
        print(table(runs, split))
    ood = [s for s in every if s.startswith("ood-")]
    if ood and not args.split:
        print(ood_table(runs, ood))
    print(pseudo_label_table(runs))
    print(precondition_table(runs))
    print(how_they_ran_table(runs))
    if args.svg:
        write_text(Path(args.svg), mean_plot(runs, splits[0]))


if __name__ == "__main__":
    main()
