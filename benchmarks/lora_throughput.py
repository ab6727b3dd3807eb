"""Benchmark: LoRA fine-tuning throughput of skindeep's loop vs `transformers.Trainer`.

The same job both ways: same model, the same tokenized benign pairs (loss on responses only),
LoRA r = 8 on all linear layers, the same AdamW and schedule (linear warm-up, linear decay to
10%, passed to the Trainer as its optimizer), gradient clipping, batch size and steps.
Each job is timed whole, from a loaded model and raw pairs to a trained adapter (tokenizing
and wrapping included), repeated and interleaved; the table shows the median examples/second.
The two samplers draw batches in different orders, so with n > batch size the padded widths
differ a little; `--n` equal to `--batch-size` makes every batch identical (a pure loop test).

    python benchmarks/lora_throughput.py [--model PATH] [--steps 40] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import transformers
from peft import get_peft_model
from transformers import PrinterCallback, Trainer, TrainingArguments

from skindeep.finetune.config import FinetuneConfig
from skindeep.finetune.data import organism_pairs
from skindeep.finetune.train import finetune, lora_config
from skindeep.models import load_model
from skindeep.organisms.training import Tokenized, TrainConfig, collate, lr_lambda, tokenize_chat
from skindeep.runtime import pad_token_id


def default_model() -> Path:
    """The micro zoo's full-FT aligned organism (built into the cache if missing)."""
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo

    return build_zoo(load_zoo_spec("micro"))["micro-llama-sft-full"].path


def ours(path: Path, pairs, config: FinetuneConfig, device: str) -> tuple[float, float]:
    """Seconds and last loss of skindeep's `finetune`."""
    lm = load_model(path, device=device)
    start = time.perf_counter()
    _, stats = finetune(lm.model, lm.tokenizer, pairs, config, seed=0)
    _sync()
    return time.perf_counter() - start, stats.loss_last


class _LastLoss(transformers.TrainerCallback):
    """Keeps the training losses the Trainer logs."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def hf_trainer(path: Path, pairs, config: FinetuneConfig, device: str) -> tuple[float, float]:
    """Seconds and last logged loss of the same job through `transformers.Trainer`."""
    lm = load_model(path, device=device)
    tok = lm.tokenizer
    steps = config.num_steps(len(pairs))
    start = time.perf_counter()
    data = [tokenize_chat(tok, p.instruction, p.response, config.max_len) for p in pairs]
    torch.manual_seed(0)
    model = get_peft_model(lm.model, lora_config(config))
    features = [{"input_ids": t.input_ids, "labels": t.labels} for t in data]
    pad = pad_token_id(tok)  # Llama-style tokenizers have no pad token: same fallback as ours
    # The same optimiser and schedule as skindeep's loop (AdamW, linear warm-up, decay to 10%).
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = TrainConfig(steps=steps, lr=config.lr, warmup_frac=config.warmup_frac)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule))

    def collator(batch: list[dict]) -> dict[str, torch.Tensor]:
        return collate([Tokenized(f["input_ids"], f["labels"]) for f in batch], pad)

    log = _LastLoss()
    with tempfile.TemporaryDirectory() as tmp:
        training = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=config.batch_size,
            max_steps=steps,
            learning_rate=config.lr,
            max_grad_norm=config.max_grad_norm,
            logging_steps=max(1, steps // 10),
            save_strategy="no",
            report_to="none",
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model=model,
            args=training,
            train_dataset=features,
            data_collator=collator,
            callbacks=[log],
            optimizers=(opt, sched),
        )
        trainer.remove_callback(PrinterCallback)  # keep the table readable
        trainer.train()
    _sync()
    return time.perf_counter() - start, log.losses[-1] if log.losses else math.nan


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", default=None, help="checkpoint folder (default: micro organism)")
parser.add_argument("--pairs", default=None, help="benign pairs file (default: organism pairs)")
parser.add_argument("--n", type=int, default=64)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--lr", type=float, default=2e-3)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument("--threads", type=int, default=1)


def main() -> None:
    """Time both jobs, interleaved, and print the table."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    path = Path(args.model) if args.model else default_model()
    config = FinetuneConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    pairs = organism_pairs().sample(args.n, seed=0)
    if args.pairs:
        from skindeep.finetune.data import load_pairs

        pairs = load_pairs(args.pairs).sample(args.n, seed=0)
    examples = config.num_steps(args.n) * min(args.batch_size, args.n)
    runs: dict[str, list[tuple[float, float]]] = {"skindeep loop": [], "transformers.Trainer": []}
    load_before = os.getloadavg()
    for repeat in range(args.repeats):
        jobs = [("skindeep loop", ours), ("transformers.Trainer", hf_trainer)]
        for name, job in jobs if repeat % 2 == 0 else jobs[::-1]:
            runs[name].append(job(path, pairs, config, args.device))
    load_after = os.getloadavg()
    print(
        f"model={path.name} device={args.device} n={args.n} steps={args.steps} "
        f"batch={args.batch_size} lora r={config.rank} all-linear repeats={args.repeats} "
        f"threads={torch.get_num_threads()} cpus={os.cpu_count()} torch={torch.__version__} "
        f"transformers={transformers.__version__} python={platform.python_version()}"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'loop':22s} {'median s':>9s} {'min s':>7s} {'examples/s':>11s} {'last loss':>9s}")
    medians = {}
    for name, results in runs.items():
        seconds = [s for s, _ in results]
        medians[name] = statistics.median(seconds)
        print(
            f"{name:22s} {medians[name]:9.2f} {min(seconds):7.2f} "
            f"{examples / medians[name]:11.1f} {results[-1][1]:9.3f}"
        )
    ratio = medians["transformers.Trainer"] / medians["skindeep loop"]
    print(f"skindeep loop is {ratio:.2f}x the Trainer's throughput")


if __name__ == "__main__":
    main()
