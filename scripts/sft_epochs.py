"""How many SFT epochs saturate a preset's SFT: SFT alone from its base, greedy dev accuracy per epoch count.

    python scripts/sft_epochs.py --config configs/tiny-llama.json --epochs 3 6 9 12

Each epoch count trains from the base model on the labeled split (the preset's sft settings, shuffle --seed, default 1),
then evaluates greedy accuracy (calculator on) on dev: decide on dev, never on test. Where the curve
flattens, SFT is saturated, and a step-matched control will not gain by training longer.
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import format_for, report  # noqa: E402
from data.world import make_world  # noqa: E402
from model import load_pretrained  # noqa: E402
from preset import base_model_type, check_config, load_config  # noqa: E402
from sample import SamplingConfig, evaluate_rows  # noqa: E402
from train_sft import encode_rows, train_sft  # noqa: E402
from trainer import TrainConfig  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/tiny-llama.json", help="a preset with a world source and a checkpoint")
    ap.add_argument("--epochs", type=float, nargs="+", required=True, help="epoch counts to try")
    ap.add_argument("--seed", type=int, default=1, help="the order of the examples (TrainConfig.seed)")
    args = ap.parse_args()
    config = load_config(args.config)
    check_config(config, args.config)
    if config["data"]["source"] != "world" or not config["model"]["checkpoint"]:
        ap.error(f"{args.config}: needs data.source 'world' and a model.checkpoint")
    if min(args.epochs) <= 0:
        ap.error("--epochs must all be > 0")
    splits = make_world(config["seed"], config["data"]["sizes"])
    fmt = format_for(base_model_type(config))
    print("| epochs | dev | train s |\n|---|---|---|")
    for epochs in args.epochs:
        model, tok = load_pretrained(config["model"]["checkpoint"])
        cfg = replace(TrainConfig(**config["sft"]), epochs=epochs, steps=0, seed=args.seed)
        start = time.time()
        model = train_sft(model, tok, encode_rows(tok, fmt, splits["labeled"], "labeled"), cfg)
        seconds = time.time() - start
        records = evaluate_rows(model, tok, splits["dev"], SamplingConfig(**config["eval"]), seed=0)
        print(f"| {epochs:g} | {report.percent_correct(records):.1f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sft_epochs.py: error: {e}")
