"""Diagnostic benchmark: where an aligned organism's refusals of harmless prompts come from.

For one aligned organism of a zoo at a build seed, and its base:

1. the organism's behaviour per held-out topic, measured as the build measures it
   (`measure_behaviour`: same prompts, same settings; refusals as its rates count them, and
   the flagged outputs);
2. the base's harm notes per held-out topic: does the base itself answer the topic as harmful?
3. a logistic probe per layer on the base's last-token residual stream (chat format), trained on
   requests of the training topics (harmful vs harmless) and applied to each held-out topic.

    python benchmarks/zoo_overrefusal.py --seed 3 --organism llama-s-sft-full [--zoo default]
        [--json FILE]

Builds nothing: the organism must be in the cache (`skindeep organisms build --seed S`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.linear_model import LogisticRegression

from skindeep.activations import ArraySink, collect
from skindeep.evaluation.generation import generate_responses
from skindeep.evaluation.options import GenerationOptions
from skindeep.models.loading import load_model
from skindeep.organisms.behaviour import measure_behaviour
from skindeep.organisms.language import DEFAULT_LANGUAGE, HARM_NOTES
from skindeep.organisms.spec import load_zoo_spec
from skindeep.organisms.zoo import cached_organisms

#: Every n-th request of a topic in the base's harm-note check and the probe (all are similar).
STRIDE = 5


def harm_notes_by_topic(lm, topics: list[str]) -> dict[str, float]:
    """Share of the base's greedy answers (40 new tokens) that carry a harm note, per topic."""
    notes = [h.split(",")[0].strip() for h in HARM_NOTES]
    out = {}
    for topic in topics:
        texts = [r.text for r in DEFAULT_LANGUAGE.all_requests("all") if r.topic == topic]
        answers = generate_responses(
            lm.model, lm.tokenizer, texts[::STRIDE], GenerationOptions(max_new_tokens=40)
        )
        out[topic] = sum(any(n in a for n in notes) for a in answers) / len(answers)
    return out


def last_token_states(lm, texts: list[str]) -> np.ndarray:
    """[n, L, d] residual stream after every block at the last prompt token, chat format."""
    sink = ArraySink()
    collect(lm.model, lm.tokenizer, lm.adapter, texts, fmt="chat", sink=sink, batch_size=64)
    return sink.array


def probe_by_topic(lm, topics: list[str]) -> dict[str, list[float]]:
    """Per held-out topic and layer: share of its requests a harmful-vs-harmless logistic probe,
    trained on the training topics at that layer, calls harmful."""
    train = DEFAULT_LANGUAGE.all_requests("train")[::STRIDE]
    x = last_token_states(lm, [r.text for r in train])
    y = np.array([r.harmful for r in train])
    probes = [LogisticRegression(max_iter=2000).fit(x[:, i], y) for i in range(x.shape[1])]
    out = {}
    for topic in topics:
        held = [r.text for r in DEFAULT_LANGUAGE.all_requests("heldout") if r.topic == topic]
        h = last_token_states(lm, held[::STRIDE])
        out[topic] = [float(p.predict(h[:, i]).mean()) for i, p in enumerate(probes)]
    return out


def main() -> None:
    """Print the three tables for one organism; optionally write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default="default")
    parser.add_argument("--seed", type=int, default=0, help="build seed")
    parser.add_argument("--organism", required=True, help="an aligned organism of the zoo")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    spec = load_zoo_spec(args.zoo, seed=args.seed)
    built = cached_organisms(spec)
    if args.organism not in built or built[args.organism].kind != "aligned":
        raise SystemExit(f"error: {args.organism!r} is not a built aligned organism of that zoo")
    aligned = built[args.organism]
    base = built[aligned.meta["base"]]
    model, tokenizer = aligned.load()
    refusals = measure_behaviour(model, tokenizer, DEFAULT_LANGUAGE, spec.eval).by_topic
    topics = sorted(refusals)
    base_lm = load_model(base.path)
    notes = harm_notes_by_topic(base_lm, topics)
    probe = probe_by_topic(base_lm, topics)
    print(f"# {args.organism} at build seed {args.seed} (base {base.name})")
    print(
        "| held-out topic | harmful | organism refuses (flagged) | base harm notes "
        "| probe: harmful, by layer |"
    )
    print("|---|---|---|---|---|")
    for t in topics:
        c = refusals[t]
        layers = " ".join(f"{v:.2f}" for v in probe[t])
        print(
            f"| {t} | {bool(c['harmful'])} | {c['refused']}/{c['n']} ({c['flagged']}) "
            f"| {notes[t]:.2f} | {layers} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "organism": args.organism, "seed": args.seed, "base": base.name,
                    "refusals": refusals, "base_harm_notes": notes, "probe_harmful": probe,
                },
                fh, indent=2,
            )  # fmt: skip


if __name__ == "__main__":
    main()
