"""Pretrain a tiny base model on the toy world's "web" (data/world.py's pretraining corpus), so that the
loop starts as the paper does: from a model that can already read and copy, not from random weights.

The paper starts from FLAN-T5 and Llama-2, which have read the web: SFT on GSM8K saturates in a few
epochs, and what self-training adds is new data, not more steps (../shared/LESSONS.md). A
from-scratch model is step-starved instead. So the base reads problems of other templates and
phrasings, worked arithmetic and copying, with a next-token loss (the SFT trainer, loss on every
token for a decoder; the target for T5). No task or OOD template is in it.

    make base    # = python pretrain.py --init configs/scratch-llama.json --out bases/tiny-llama --problems 16000 \
                 #     --arithmetic 2000 --copies 2000 --epochs 2 --lr 3e-3 --batch-size 32 --micro-batch-size 32

The model's shape is a from-scratch preset's model.init (the default itself starts from the base).
The base is written as a checkpoint folder with its tokenizer and recipe.json (every setting, the
corpus sizes, the torch version and thread count).
"""
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

from data import Example, format_for
from data.world import make_world, pretraining_corpus
from flags import Parser, add_flags, from_flags
from model import init_from_config, save_pretrained
from model.checkpoint import replace_folder
from model.t5 import relative_position_bucket
from model.tokenizer import train_sentencepiece
from preset import load_config
from train_sft import train_sft
from trainer import TrainConfig

CORPUS_SEED = 0     # one corpus, one base for every run seed (as the paper uses one FLAN-T5)
TOKENIZER_TEXTS = 2000  # task-style problems the tokenizer also learns its pieces from (never trained on)


def t5_locality_prior(model):
    """Set a T5's relative position biases to a locality prior before pretraining (Llama needs none: RoPE).

    T5 has no position embeddings: its encoder sees the order of its input only through one learned
    scalar per (distance bucket, head) added to the attention scores. At Hugging Face's init (std 0.07)
    those scalars are flat, and pretrained with `make base`'s recipe the encoder's moved to at most 0.32
    in 1,250 steps: the encoder stayed a bag of tokens, and the decoder wrote the question's digits in
    the wrong order (docs/results-world.md). This prior starts every head attending near itself, with
    ALiBi's linear penalty (Press et al. 2022): bias = -slope x distance. In the encoder the first half
    of the heads prefer keys on the left, the second half on the right (2 more off for the other
    side), slopes 1, 1/2, 1/4, ...; the causal decoder's heads get slopes 1, 1/2, 1/4, ...
    """
    for stack, bidirectional in ((model.encoder, True), (model.decoder, False)):
        attn = stack.block[0].layer[0].SelfAttention
        weight = attn.relative_attention_bias.weight                     # (buckets, heads)
        heads, half = weight.shape[1], max(1, weight.shape[1] // 2)
        relative = torch.arange(-attn.max_distance, attn.max_distance + 1)  # key position - query position
        bucket = relative_position_bucket(relative, bidirectional, attn.buckets, attn.max_distance)
        with torch.no_grad():
            for b in bucket.unique().tolist():
                members = relative[bucket == b]
                r = members[members.abs().argmin()].item()                # the bucket's offset nearest zero
                for h in range(heads):
                    slope = 0.5 ** (h % half if bidirectional else h)
                    other_side = bidirectional and (r > 0 if h < half else r < 0)  # heads < half look left
                    weight[b, h] = -slope * abs(r) - (2.0 if other_side else 0.0)


def corpus_examples(tok, fmt, rows):
    """Decoder: the whole text is the target (<bos> | prompt answer <eos>), prompt ids then answer ids, as
    SFT will see them. T5: the encoder reads the prompt and the decoder writes the rest."""
    examples = []
    for row in rows:
        prompt, answer = fmt.encode_example(tok, row["question"], fmt.format_answer(row["answer"]))
        if fmt.prompt_ends_with_eos:
            examples.append(Example(prompt, answer))
        else:
            examples.append(Example(prompt[:1], prompt[1:] + answer))
    return examples


def main():
    ap = Parser(__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True, help="a loop preset: its model.init and tokenizer_vocab_size")
    ap.add_argument("--out", required=True, help="the base's checkpoint folder")
    ap.add_argument("--problems", type=int, default=24000, help="problems of data/synthetic.py's templates")
    ap.add_argument("--arithmetic", type=int, default=4000, help="worked sums, differences and products")
    ap.add_argument("--copies", type=int, default=4000, help="questions to write again")
    add_flags(ap, TrainConfig)
    args = ap.parse_args()
    cfg = from_flags(ap, args, TrainConfig)
    for flag in ("problems", "arithmetic", "copies"):
        if getattr(args, flag) < (1 if flag == "problems" else 0):
            ap.error(f"argument --{flag}: {getattr(args, flag)} is not allowed (allowed: a whole number >= "
                     f"{1 if flag == 'problems' else 0})")
    if Path(args.out).exists() and not (Path(args.out) / "config.json").is_file():
        ap.error(f"argument --out: {args.out} exists and is not a checkpoint folder (it would be replaced)")
    model_cfg = load_config(args.init)["model"]  # a preset, merged and type-checked as the loop reads it
    if not isinstance(model_cfg["init"], dict) or "model_type" not in model_cfg["init"]:
        ap.error(f"argument --init: {args.init}: model.init must be an HF config with a model_type (a from-scratch "
                 f"preset such as configs/scratch-llama.json), not {model_cfg['init']!r}")
    init, vocab_size = model_cfg["init"], model_cfg["tokenizer_vocab_size"]
    fmt = format_for(init["model_type"])
    rows = pretraining_corpus(CORPUS_SEED, args.problems, args.arithmetic, args.copies)
    # The tokenizer's pieces come from the corpus and from task-style text (a stream of its own, so
    # no run's questions): a piece is a spelling, not knowledge.
    task_style = make_world("tokenizer", {"labeled": TOKENIZER_TEXTS, "dev": 0, "test": 0, "ood-changed": 0,
                                          "ood-distractors": 0, "ood-long": 0})["labeled"]
    texts = [fmt.format_prompt(r["question"]) for r in rows + task_style]
    texts += [fmt.format_answer(r["answer"]) for r in rows + task_style]
    out = Path(args.out)
    tok = train_sentencepiece(texts, vocab_size, out.parent / f".{out.name}-tokenizer", init["model_type"])
    model = init_from_config({**init, "vocab_size": tok.vocab_size}, seed=cfg.seed)
    if init["model_type"] == "t5":
        t5_locality_prior(model)
    start = time.time()
    model = train_sft(model, tok, corpus_examples(tok, fmt, rows), cfg, log_path=out.parent / f".{out.name}-log.jsonl")
    minutes = (time.time() - start) / 60
    # The base is built under a temporary name and renamed into place whole, with its log and recipe.
    building = out.parent / f".{out.name}-building"
    save_pretrained(model, tok, building)
    shutil.rmtree(out.parent / f".{out.name}-tokenizer")
    (out.parent / f".{out.name}-log.jsonl").replace(building / "pretrain_log.jsonl")
    recipe = {"command": "python pretrain.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
              "corpus": {"seed": CORPUS_SEED, "problems": args.problems, "arithmetic": args.arithmetic,
                         "copies": args.copies, "tokenizer_task_style_texts": TOKENIZER_TEXTS},
              "train": vars(cfg), "minutes": round(minutes, 1), "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(building.iterdir())
                         if p.name != "pretrain_log.jsonl"}}
    (building / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    replace_folder(building, out)
    print(f"{args.out}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(rows)} corpus rows, {minutes:.1f} min")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"pretrain.py: error: {e}")
