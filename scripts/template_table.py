"""Per-template accuracy and pseudo-labels of finished loop runs on the toy world: where a gap comes from.

    python scripts/template_table.py runs/tiny-llama-200-pool2400-dpo-st-seed0 ... [--split test]

The world's questions come from 12 templates (data/world.py), and a model tends to solve a template
almost always or almost never, so one template flipping moves a score by ~8 points. Two tables:
  - accuracy (%) per template of each run's SFT models (sft-0 ... sft-K) on --split, counted from
    each stage's eval-{split}.jsonl;
  - pseudo-labels per template at each iteration (pseudo-k/pseudo.jsonl), against how many labeled
    and pool questions the template has: a template whose questions are all pseudo-labelled in both
    methods cannot tell DPO-ST from ST any more.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import read_jsonl  # noqa: E402

NAMES = {"dpo-st": "DPO-ST", "st": "ST"}


def need(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"template_table.py: error: {path} is missing (is the run finished?)")
    return path


def templates_of(run: Path, splits) -> dict:
    """Question id -> template, from the run's own data files (only the world's rows have one)."""
    template = {}
    for split in splits:
        for line, row in enumerate(read_jsonl(need(run / "data" / f"{split}.jsonl")), 1):
            if "template" not in row:
                raise SystemExit(f"template_table.py: error: {run / 'data' / f'{split}.jsonl'} line {line} has "
                                 "no 'template' (only data.source 'world' has templates)")
            template[row["id"]] = row["template"]
    return template


def markdown(header, rows):
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="finished loop run folders (loop.py --out) on the world")
    ap.add_argument("--split", default="test", choices=["test", "dev"],
                    help="the split whose accuracies are counted (every SFT stage evaluates both)")
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs]
    of_split = {run: templates_of(run, [args.split]) for run in runs}
    names = sorted(set(of_split[runs[0]].values()))
    accuracy_rows, pseudo_rows = [], []
    for run in runs:
        config = json.loads(need(run / "config.json").read_text())
        label = f"{NAMES[config['method']]} seed {config['seed']}"
        trained_on = templates_of(run, ["labeled", "unlabeled"])  # the questions pseudo-labels come from
        template = {**of_split[run], **trained_on}
        for stage in [f"sft-{k}" for k in range(config["iterations"] + 1)]:
            right, total = Counter(), Counter()
            for record in read_jsonl(need(run / stage / f"eval-{args.split}.jsonl")):
                right[template[record["id"]]] += record["correct"]
                total[template[record["id"]]] += 1
            accuracy_rows.append([f"{label} {stage}"] + [f"{100 * right[n] / total[n]:.0f}" if total[n] else "–"
                                                         for n in names])
        available = Counter(trained_on.values())
        for k in range(1, config["iterations"] + 1):
            labels = Counter(template[row["id"]] for row in read_jsonl(need(run / f"pseudo-{k}" / "pseudo.jsonl")))
            pseudo_rows.append([f"{label} iter {k}"] + [f"{labels[n]} / {available[n]}" for n in names])
    print(f"### accuracy per template ({args.split}, %)\n")
    print("\n".join(markdown(["run, stage"] + names, accuracy_rows)))
    print("\n### pseudo-labels per template / its labeled and pool questions\n")
    print("\n".join(markdown(["run, iteration"] + names, pseudo_rows)))


if __name__ == "__main__":
    main()
