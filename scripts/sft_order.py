"""Train one SFT stage of a finished loop run again, with another order of the same examples (or
another learning rate), and evaluate it on dev: how much of a run's result is one SFT's order?

    python scripts/sft_order.py runs/NAME sft-3 --seed 1 --out runs/NAME-sft-3-order1 [--lr 1e-3]

The stage's rows, base model and SFT settings are the run's own (loop.sft_rows, config.json); only
--seed (TrainConfig's seed: the order of the examples; default the stage's own seed) and the flags
given change. With the stage's own seed it gives the stage's dev accuracy again. Writes
train_log.jsonl, eval-dev.jsonl and eval.json into --out; prints one JSON line.
"""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import read_jsonl  # noqa: E402
from flags import Parser  # noqa: E402
from loop import Run, evaluate, sft_from_base, sft_rows  # noqa: E402
from trainer import TrainConfig  # noqa: E402


def main():
    ap = Parser(__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished loop run's folder")
    ap.add_argument("stage", help="sft-0, sft-1, ...: an SFT stage of that run")
    ap.add_argument("--seed", type=int, default=None, help="the order of the examples (default: the stage's own)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the run's)")
    ap.add_argument("--min-lr-ratio", type=float, default=None, help="cosine decays to this x the peak (default: the run's)")
    ap.add_argument("--out", required=True, help="a new folder for the results")
    args = ap.parse_args()
    run_dir, out = Path(args.run), Path(args.out)
    if not (run_dir / "config.json").is_file():
        ap.error(f"argument run: {run_dir} has no config.json; give a loop run's folder")
    if not re.fullmatch(r"sft-\d+", args.stage) or not (run_dir / args.stage / "DONE").is_file():
        ap.error(f"argument stage: {args.stage!r} is not a finished SFT stage of {run_dir} (allowed: sft-0, sft-1, ...)")
    if out.exists():
        ap.error(f"argument --out: {out} exists; give a new folder")
    config = json.loads((run_dir / "config.json").read_text())
    run = Run(run_dir, config, config["method"], [])
    changed = {name: value for name, value in (("lr", args.lr), ("min_lr_ratio", args.min_lr_ratio)) if value is not None}
    seed = run.seed(args.stage) if args.seed is None else args.seed
    cfg = TrainConfig(**{**config["sft"], **changed, "seed": seed})  # a bad value is one clear error here

    rows = sft_rows(run_dir, read_jsonl(run_dir / "data" / "labeled.jsonl"), int(args.stage.split("-")[1]))
    out.mkdir(parents=True)
    model, tok = sft_from_base(run, rows, cfg, args.stage, out / "train_log.jsonl")
    evaluate(run, model, tok, out, ("dev",))  # into --out; the run itself is only read
    dev = json.loads((out / "eval.json").read_text())["dev"]
    print(json.dumps({"run": str(run_dir), "stage": args.stage, "rows": len(rows), "seed": seed, **changed,
                      "dev": dev, "run_dev": json.loads((run_dir / args.stage / "eval.json").read_text())["dev"]}))


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        sys.exit(f"sft_order.py: {e}")
