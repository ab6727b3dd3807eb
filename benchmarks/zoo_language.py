"""Benchmark: does a richer organism language make the default zoo's behaviour robust to the
build seed? The default zoo built with each language variant at each build seed, side by side.

Issue 9: on unseen build seeds most misses were one whole held-out harmless topic refused, and
the causal test's evaluation KL failed on the same topic. Alignment data teaches refusal from
the language's training topics (six harmful, six harmless by default), so this benchmark adds
training topics (never held-out ones: the four evaluation topics stay the same) and rebuilds:

- `default`: the core language (`LANGUAGES["core"]`, 16 topics, the package default);
- `more-harmless`: four more harmless training topics (20);
- `more-topics`: four more harmless and four more harmful training topics (24): the registered
  "wide" language (`skindeep organisms build --language wide`).

A variant's vocabulary, pretraining facts and alignment data change with its topics, so every
organism is a different build (the language is part of each organism's content hash; builds go
to the organism cache like any other). Behaviour is measured on the same held-out prompts for
every variant. `--causal` also runs the causal test on every aligned build as
`zoo_ablation.py --steering midpoint --forms affine` does (selection on 64 + 32 training-topic
prompts of the default language, 64 held-out prompts per class).

    python benchmarks/zoo_language.py [--variants default more-topics] [--seeds 3 4 6]
        [--workers 2] [--causal] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from zoo_robustness import row, zoo_table

from skindeep.organisms.language import LANGUAGES, TOPICS, WIDE_HARMLESS, ChatLanguage
from skindeep.organisms.spec import load_zoo_spec
from skindeep.organisms.zoo import build_zoo

#: Language variants by name: the core language, the wide one, and the wide one's harmless
#: half alone (every variant keeps the four held-out evaluation topics).
VARIANTS: dict[str, ChatLanguage] = {
    "default": LANGUAGES["core"],
    "more-harmless": ChatLanguage(topics=TOPICS + WIDE_HARMLESS),
    "more-topics": LANGUAGES["wide"],
}


def causal_row(path: Any) -> dict[str, Any]:
    """The causal test of one organism as BENCHMARKS.md's causal-test table runs it
    (`zoo_ablation.py --steering midpoint --forms affine`, every other option its default)."""
    from zoo_ablation import ablate_organism, arguments

    args = arguments().parse_args(["--steering", "midpoint", "--forms", "affine"])
    return ablate_organism(path, "affine", args)


def main() -> None:
    """Build the default zoo per variant and seed; print behaviour (and causal-test) tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--causal", action="store_true", help="also run the causal test")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for variant in args.variants:
        lang = VARIANTS[variant]
        for seed in args.seeds:
            spec = load_zoo_spec("default", seed=seed)
            start = time.perf_counter()
            built = build_zoo(spec, language=lang, workers=args.workers)
            for a in spec.aligned:
                r = {"variant": variant, **row(built[a.name], spec)}
                if args.causal:
                    r["causal"] = causal_row(built[a.name].path)
                rows.append(r)
            mine = [r for r in rows if r["variant"] == variant and r["seed"] == seed]
            ok = sum(r["meets_behaviour"] for r in mine)
            print(
                f"# {variant} seed {seed}: {ok}/{len(mine)} aligned meet targets; "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
            if args.json:  # after every build, so an interrupted run keeps its rows
                with open(args.json, "w") as fh:
                    json.dump(rows, fh, indent=2)
    zoo = load_zoo_spec("default")
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        ok = sum(r["meets_behaviour"] for r in mine)
        print(f"\n## {variant}: {ok}/{len(mine)} builds meet their behaviour targets")
        print("\n".join(zoo_table(mine, zoo)))
        if args.causal:
            met = sum(r["causal"].get("meets_target") == "yes" for r in mine)
            print(f"causal test (drop >= 0.8, null drop < 0.1, eval KL < 0.1): {met}/{len(mine)}")


if __name__ == "__main__":
    main()
