"""DPO-ST (the paper's Algorithm 1) and the plain self-training (ST) baseline, as resumable stages.

    python loop.py --config configs/tiny-llama.json --method dpo-st --iterations 3 --out runs/NAME
    torchrun --nproc_per_node 8 loop.py --config configs/llama-2-7b.json ...   (every stage on 8 processes)

  data, base      the splits (labeled, unlabeled, dev, test, ood*) and the base model (+ tokenizer)
  sft-0           SFT of the base model on the labeled data (the warm-up)
  for k in 1..K:
    samples-k     sample sft-{k-1} on the labeled questions (5x, T=0.7, top-k 50, calculator)   [dpo-st]
    pairs-k       correct vs incorrect samples of rounds 1..k -> preference pairs               [dpo-st]
    dpo-k         DPO of sft-{k-1} against a frozen copy of itself (evaluated on dev only)    [dpo-st]
    pseudo-k      sample dpo-k (ST: sft-{k-1}) 3x on the labeled questions (pseudo.questions), keep
                  correct ones with the gold, pool with round k-1's, cap per question
    sft-k         SFT FROM THE BASE MODEL on the pseudo-labels + labeled rows not among them
  control         SFT from base on the labeled data for as many steps as sft-K (step-matched control)
  report          metrics.json (accuracies, per-iteration counts, preconditions), report.md, accuracy.svg

data, base and sft-0 do not depend on the method, nor does the control when sft-K trains as many steps
in both: `--reuse RUN` copies those from another method's run of the same config and seed (ST after
DPO-ST, as `make iterate` runs them) instead of training them again.

Each stage writes into runs/NAME/<stage>/ and writes DONE last; a rerun skips finished stages and
redoes an unfinished one from scratch. Every stage is seeded from (seed, stage name), so a run
killed at any moment and rerun ends with the same numbers as an unbroken one.
"""
import json
import os
import platform
import resource
import shutil
import time
import zlib
from dataclasses import fields
from pathlib import Path

import torch

from data import (build_pairs, build_pseudo_labels, format_for, load_dataset, read_jsonl, report, write_atomically,
                  write_jsonl)
from data.synthetic import make_synthetic
from data.world import make_world
from distributed import DistributedConfig, agree, barrier, finish, process_device, rank_and_world
from dpo import DPOConfig, read_pairs, train_dpo
from model import init_from_config, load_pretrained, load_tokenizer, save_pretrained
from model.tokenizer import train_sentencepiece
from preset import QUESTION_SETS, base_model_type, check_config, load_config, run_settings
from sample import SamplingConfig, evaluate_rows
from train_sft import encode_rows, train_sft
from flags import Parser
from trainer import TrainConfig, total_steps

def busy_cpu_seconds() -> float | None:
    """CPU seconds every process of this machine has used since boot (Linux's /proc/stat; else None)."""
    try:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_description(device) -> str:
    """The CPU (its vector unit, which sets the fp32 and bf16 speed), cores, threads, device and torch."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    threads = torch.get_num_threads()
    return (f"{cpu} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
            f"{threads} torch thread{'s' * (threads != 1)}, {where}, torch {torch.__version__}")


METHOD_FREE = ("data", "base", "sft-0")  # the same in DPO-ST and ST (and the control, at equal steps)


class Run:
    def __init__(self, out: Path, config: dict, method: str, plan: list[str], reuse: Path | None = None):
        self.out, self.config, self.method, self.plan, self.reuse = out, config, method, plan, reuse
        # The model family, decided once: it says how every stage writes prompts and reads answers.
        self.model_type = base_model_type(config)
        self.format = format_for(self.model_type)
        # Under torchrun every process runs every stage: training under DDP/FSDP, sampling a share of
        # the batches. Rank 0 alone writes files; the others wait for it at each stage's end.
        self.rank, self.world = rank_and_world()
        self.writes = self.rank == 0
        if self.world > 1 and config["device"].startswith("cuda:"):  # every process would use that one GPU
            raise ValueError(f"device {config['device']!r}: under torchrun use 'cuda' (each process takes "
                             "its own GPU, LOCAL_RANK)")
        self.device = process_device(config["device"])
        self.parallel = DistributedConfig(**config["distributed"])

    def stage(self, name, work, rank_0_only=False):
        """Run work(folder) unless the stage is DONE; DONE is written last, after all its files.
        Every process follows rank 0's view of DONE, so all of them resume at the same stage."""
        folder = self.out / name
        if name in METHOD_FREE:
            self.take_reused(name)
        if agree((folder / "DONE").is_file()):
            return folder
        if self.writes:
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished attempt: start it again from scratch
            folder.mkdir(parents=True)
        barrier()
        start, own_cpu, all_cpu = time.time(), time.process_time(), busy_cpu_seconds()
        torch.manual_seed(self.seed(name))
        if self.writes or not rank_0_only:
            work(folder)
        barrier()  # every process's share is done (and rank 0's files are written)
        if not self.writes:
            return folder
        # How it ran, for the report: the machine, the cores other processes kept busy meanwhile (the
        # machine's CPU time less this process's, over the wall time; under torchrun the other ranks'),
        # and the process's peak resident memory so far (Linux: KB). Then DONE, the stage's duration.
        wall, now = time.time() - start, busy_cpu_seconds()
        beside = None if now is None or all_cpu is None or wall <= 0 else max(
            0.0, (now - all_cpu - (time.process_time() - own_cpu)) / wall)
        peak_gb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        write_atomically(folder / "how_it_ran.json", json.dumps(
            {"machine": machine_description(self.device), "cores_busy_beside": beside, "peak_rss_gb": peak_gb}).encode())
        write_atomically(folder / "DONE", f"{time.time() - start:.1f}\n".encode())  # its duration, for the estimates
        report.write_metrics(self.out, self.format, self.config["iterations"])  # metrics.json, so far
        done = self.plan.index(name) + 1
        left, all_seen = self.minutes_left(self.plan[done:])
        guess = ("time left: estimated after sft-0" if left is None
                 else f"{'about' if all_seen else 'at least'} {left:.0f} min left")
        print(f"[{done}/{len(self.plan)}] {name} done in {time.time() - start:.0f}s; {guess}", flush=True)
        return folder

    def take_reused(self, name, steps=None):
        """--reuse: copy stage `name` from the other run when it finished there (the control: when it trained
        `steps` steps). The copy holds REUSED (where it came from); its seconds count as 0 in this run."""
        source, folder = (self.reuse / name if self.reuse else None), self.out / name
        if not self.writes or (folder / "DONE").is_file() or not self.reusable(name, steps):
            return
        shutil.rmtree(folder, ignore_errors=True)
        partial = folder.with_name(f"{name}.part")  # a copy cut short never looks finished
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, symlinks=True)
        (partial / "REUSED").write_text(f"{source.resolve()}\n")
        partial.rename(folder)
        print(f"[{self.plan.index(name) + 1}/{len(self.plan)}] {name} copied from {source}", flush=True)

    def reusable(self, name, steps=None) -> bool:
        """Whether --reuse's run finished stage `name` (with `steps` steps, when given), so it can be copied."""
        source = self.reuse / name if self.reuse else None
        return (source is not None and (source / "DONE").is_file()
                and (steps is None or int((source / "steps").read_text()) == steps))

    def will_copy(self, name) -> bool:
        """Whether a stage not run yet will be copied from --reuse's run: the method-free stages, and the
        control when every SFT has the config's fixed steps (else its steps are known only after sft-K)."""
        fixed = self.config["sft"].get("steps")
        return (name in METHOD_FREE and self.reusable(name)
                or name == "control" and bool(fixed) and self.reusable(name, fixed))

    def minutes_left(self, remaining: list[str]) -> tuple[float | None, bool]:
        """(minutes, whether every remaining stage's kind has run once). Each remaining stage is guessed
        to take as long as the last finished stage of its kind; a kind not seen yet counts nothing, so
        until each has run the figure is a lower bound (guessing them by the mean of the others said
        "175 min" for a 60-min run: SFT is long, sampling and DPO short). `data` and `base` run once,
        so they say nothing about the rest (a copy-pretrained base takes longer than any later stage)."""
        if not remaining:
            return 0.0, True
        # A stage copied by --reuse counts with the time it took in its own run, on this machine; one that
        # will be copied takes no time.
        took = {report.stage_kind(n): report.duration(self.out, n) for n in self.plan
                if n not in ("data", "base") and report.finished(self.out, n)}
        if not took:
            return None, False
        remaining = [n for n in remaining if not self.will_copy(n)]
        minutes = sum(took.get(report.stage_kind(n), 0.0) for n in remaining) / 60
        return minutes, all(report.stage_kind(n) in took for n in remaining)

    def seed(self, name) -> int:
        return self.config["seed"] * 1_000_003 + zlib.crc32(name.encode()) % 1_000_003

    def load(self, stage, training=False):
        """A checkpoint of the run. Training keeps fp32 weights (bf16 autocast on CUDA); sampling uses `dtype`."""
        dtype = torch.float32 if training else getattr(torch, self.config["dtype"])
        return load_pretrained(self.out / stage / "checkpoint", device=self.device, dtype=dtype)

    def tokenizer(self):
        """The run's tokenizer (every checkpoint of the run carries the base model's)."""
        return load_tokenizer(self.out / "base" / "checkpoint", self.model_type)


def prepare_data(run, folder):
    c = run.config["data"]
    seed = run.config["seed"] if c["seed"] is None else c["seed"]
    if c["source"] == "world":
        splits = make_world(seed, c["sizes"])
    elif c["source"] == "synthetic":
        splits = make_synthetic(seed, c["sizes"])
    else:  # the paper's setting: GSM8K train is labeled; its questions (with final answers) are the unlabeled pool
        train = load_dataset("gsm8k-train")
        splits = {"labeled": train, "unlabeled": [{**row, "answer": None} for row in train],
                  "dev": load_dataset("gsm8k-dev"), "test": load_dataset("gsm8k-test")}
        splits |= {f"ood-{name}": load_dataset(name) for name in c["ood"]}
    for split, rows in splits.items():
        write_jsonl(folder / f"{split}.jsonl", rows)


def prepare_base(run, folder):
    c = run.config["model"]
    if c["checkpoint"]:
        if run.writes:
            (folder / "checkpoint").symlink_to(Path(c["checkpoint"]).resolve())
        return
    # The tokenizer learns from exactly the text the model will read and write.
    data, fmt = run.out / "data", run.format
    if run.writes:
        text = [fmt.format_prompt(r["question"]) for split in ("labeled", "unlabeled")
                for r in read_jsonl(data / f"{split}.jsonl")]
        text += [fmt.format_answer(r["answer"]) for r in read_jsonl(data / "labeled.jsonl")]
        train_sentencepiece(text, c["tokenizer_vocab_size"], folder / "tokenizer", run.model_type)
    barrier()
    tok = load_tokenizer(folder / "tokenizer", run.model_type)
    model = init_from_config({**c["init"], "vocab_size": tok.vocab_size}, seed=run.seed("base")).to(run.device)
    if c["copy_pretrain_steps"]:
        # The paper starts from pretrained models, which can copy; a tiny model from scratch cannot, and
        # copying numbers from the question is what it gets wrong. So the base reads each labeled and
        # unlabeled question and writes it again (loss on the copy), with SFT's optimizer settings.
        questions = [r["question"] for split in ("labeled", "unlabeled") for r in read_jsonl(data / f"{split}.jsonl")]
        # Shuffled by the run's seed itself (not run.seed("base")): the README's tiny-full runs were made so.
        cfg = TrainConfig(**{**run.config["sft"], "steps": c["copy_pretrain_steps"], "seed": run.config["seed"]})
        examples = [fmt.encode_copy_example(tok, q) for q in questions]
        model = train_sft(model, tok, examples, cfg, folder / "copy_log.jsonl", run.parallel)
    if run.writes:
        save_pretrained(model, tok, folder / "checkpoint")


def evaluate(run, model, tok, folder, splits=("dev", "test", "ood")):
    """Greedy accuracy (calculator on) on the given splits ("ood": every OOD set); eval.json + samples per set."""
    results = {}
    for path in sorted((run.out / "data").glob("*.jsonl")):
        if path.stem.split("-")[0] not in splits:
            continue
        records = evaluate_rows(model, tok, read_jsonl(path), SamplingConfig(**run.config["eval"]), seed=0)
        if run.writes:
            write_jsonl(folder / f"eval-{path.stem}.jsonl", records)
        results[path.stem] = report.percent_correct(records)
    if run.writes:
        write_atomically(folder / "eval.json", (json.dumps(results, indent=2) + "\n").encode())
        print("   " + "  ".join(f"{k} {v:.1f}" for k, v in results.items()), flush=True)


def sft_rows(out, labeled, k) -> list[dict]:
    """What sft-k trains on: round k's pooled pseudo-labels and the labeled rows not among them."""
    if k == 0:
        return labeled
    pseudo = read_jsonl(out / f"pseudo-{k}" / "pseudo.jsonl")
    pseudo_ids = {row["id"] for row in pseudo}
    return [row for row in labeled if row["id"] not in pseudo_ids] + pseudo


def sft_from_base(run, rows, cfg: TrainConfig, where, log_path):
    """SFT of the run's base model on rows (every SFT of the method starts from the base): (model, tok)."""
    model, tok = run.load("base", training=True)
    return train_sft(model, tok, encode_rows(tok, run.format, rows, where), cfg, log_path, run.parallel), tok


def sft_stage(run, rows, folder, steps=None):
    cfg = TrainConfig(**{**run.config["sft"], "seed": run.seed(folder.name), **({"steps": steps} if steps else {})})
    model, tok = sft_from_base(run, rows, cfg, folder.name, folder / "train_log.jsonl")
    if run.writes:
        (folder / "steps").write_text(f"{total_steps(len(rows), cfg)}\n")
        save_pretrained(model, tok, folder / "checkpoint")
    # The report compares OOD sets before and after self-training: in between, dev and test are enough.
    last = folder.name in ("sft-0", "control", f"sft-{run.config['iterations']}")
    evaluate(run, model, tok, folder, ("dev", "test", "ood") if last else ("dev", "test"))


def questions_of(run, section) -> list[dict]:
    """The questions that `section` ("pairs" or "pseudo") samples: its "questions" setting."""
    splits = QUESTION_SETS[run.config[section]["questions"]]
    return [row for split in splits for row in read_jsonl(run.out / "data" / f"{split}.jsonl")]


def sample_stage(run, source, questions, settings, folder):
    model, tok = run.load(source)
    sampling = SamplingConfig(**{f.name: settings[f.name] for f in fields(SamplingConfig)})  # the rest: selection
    samples = evaluate_rows(model, tok, questions, sampling, seed=run.seed(folder.name))
    if run.writes:
        write_jsonl(folder / "samples.jsonl", samples)


def pairs_stage(run, k, folder):
    tok = run.tokenizer()
    samples = [s for i in range(1, k + 1) for s in read_jsonl(run.out / f"samples-{i}" / "samples.jsonl")]
    questions = questions_of(run, "pairs")
    pairs = build_pairs(samples, questions, run.format, tokenize=tok.encode,
                        pairs_per_question=run.config["pairs"]["pairs_per_question"],
                        verify_calculations=run.config["pairs"]["verify_calculations"])
    if not pairs:
        raise ValueError(f"{folder}: no preference pairs (every question was all-correct or had no sample)")
    write_jsonl(folder / "pairs.jsonl", pairs)
    # A model that has memorized its labeled set answers every labeled question right: no negatives,
    # so few pairs. This line is where that shows (then try pairs.questions "unlabeled").
    print(f"   {len(pairs)} pairs from {len({p['id'] for p in pairs})} of {len(questions)} questions", flush=True)


def dpo_stage(run, k, folder):
    model, tok = run.load(f"sft-{k - 1}", training=True)
    cfg = DPOConfig(**{**run.config["dpo"], "seed": run.seed(folder.name)})
    pairs = read_pairs(run.out / f"pairs-{k}" / "pairs.jsonl", tok, run.format)
    model = train_dpo(model, tok, pairs, cfg, folder / "train_log.jsonl", parallel=run.parallel)
    if run.writes:
        save_pretrained(model, tok, folder / "checkpoint")
    evaluate(run, model, tok, folder, ("dev",))  # what the DPO step did, on the split we decide on


def pseudo_stage(run, k, folder):
    source = f"dpo-{k}" if run.method == "dpo-st" else f"sft-{k - 1}"
    questions = questions_of(run, "pseudo")
    sample_stage(run, source, questions, run.config["pseudo"], folder)
    if not run.writes:
        return  # rank 0 builds the pseudo-labels from the samples
    tok = run.tokenizer()
    previous = read_jsonl(run.out / f"pseudo-{k - 1}" / "pseudo.jsonl") if k > 1 else None
    samples = read_jsonl(folder / "samples.jsonl")
    pseudo = build_pseudo_labels(samples, questions, run.format, tokenize=tok.encode, previous=previous,
                                 verify_calculations=run.config["pseudo"]["verify_calculations"])
    write_jsonl(folder / "pseudo.jsonl", pseudo)
    # The paper's Fig. 6 mechanism: a better sampler (the DPO model) finds more correct pseudo-labels.
    print(f"   pass@1 {report.percent_correct(samples):.1f}% on the {run.config['pseudo']['questions']} questions; "
          f"{len(pseudo)} pseudo-labels pooled", flush=True)


def main():
    ap = Parser("DPO-ST or ST, end to end, resumable.")
    ap.add_argument("--config", default="configs/tiny-llama-200-pool2400-iter1.json",
                    help="a preset (configs/*.json); the default is make iterate's")
    ap.add_argument("--method", choices=["dpo-st", "st"], default="dpo-st", help="with the DPO step, or plain ST")
    ap.add_argument("--iterations", type=int, default=None, help="overrides the config's")
    ap.add_argument("--seed", type=int, default=None,
                    help="overrides the config's: every stage's seed, and the data's unless data.seed is set")
    ap.add_argument("--out", required=True, help="the run's folder; the same command again resumes it")
    ap.add_argument("--reuse", default=None, help="another method's run of the same config and seed: its "
                    "finished data, base, sft-0 (and a control of as many steps) are copied, not run again")
    args = ap.parse_args()
    if args.iterations is not None and args.iterations < 1:
        ap.error(f"argument --iterations: {args.iterations} is not allowed (allowed: a whole number >= 1)")
    config = load_config(args.config)
    if args.iterations is not None:
        config["iterations"] = args.iterations
    if args.seed is not None:
        config["seed"] = args.seed
    check_config(config, args.config)  # every value, before anything is written
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        ap.error(f"argument --out: {out} is a file; a run is a folder")
    K = config["iterations"]
    each = ["samples", "pairs", "dpo", "pseudo", "sft"] if args.method == "dpo-st" else ["pseudo", "sft"]
    plan = ["data", "base", "sft-0"] + [f"{s}-{k}" for k in range(1, K + 1) for s in each] + ["control"]
    saved = out / "config.json"
    resolved = {**config, "method": args.method}
    if saved.is_file() and run_settings(json.loads(saved.read_text())) != run_settings(resolved):
        raise ValueError(f"{out} holds a run with another config or method; use a new --out")
    reuse = Path(args.reuse) if args.reuse else None
    if reuse is not None:
        if not (reuse / "config.json").is_file():
            ap.error(f"argument --reuse: {reuse} is not a run folder (it has no config.json)")
        if reuse.resolve() == out.resolve():
            ap.error(f"argument --reuse: {reuse} is this run's own folder (allowed: another method's run)")
        if (run_settings({**json.loads((reuse / "config.json").read_text()), "method": None})
                != run_settings({**resolved, "method": None})):
            ap.error(f"argument --reuse: {reuse} is a run of another config or seed (allowed: the same config "
                     "and seed, another method)")
    run = Run(out, config, args.method, plan, reuse)  # reads the base model's type: a bad model section stops here
    if run.writes:
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(saved, (json.dumps(resolved, indent=2) + "\n").encode())

    run.stage("data", lambda f: prepare_data(run, f), rank_0_only=True)
    run.stage("base", lambda f: prepare_base(run, f))
    labeled = read_jsonl(out / "data" / "labeled.jsonl")
    run.stage("sft-0", lambda f: sft_stage(run, labeled, f))
    for k in range(1, K + 1):
        if args.method == "dpo-st":
            run.stage(f"samples-{k}", lambda f: sample_stage(run, f"sft-{k - 1}", questions_of(run, "pairs"),
                                                             config["pairs"], f))
            run.stage(f"pairs-{k}", lambda f: pairs_stage(run, k, f), rank_0_only=True)
            run.stage(f"dpo-{k}", lambda f: dpo_stage(run, k, f))
        run.stage(f"pseudo-{k}", lambda f: pseudo_stage(run, k, f))
        rows = sft_rows(out, labeled, k)
        run.stage(f"sft-{k}", lambda f: sft_stage(run, rows, f))
    final_steps = int((out / f"sft-{K}" / "steps").read_text())
    run.take_reused("control", steps=final_steps)
    run.stage("control", lambda f: sft_stage(run, labeled, f, steps=final_steps))
    if run.writes:
        report.write(out, args.method, K, run.format, config["about"])
        print((out / "report.md").read_text())
    finish()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        raise SystemExit(f"loop.py: error: {e}")
