"""skindeep: how deep is a model's safety alignment?

Reads the geometry of refusal in hidden states (aligned vs base), tests it causally, and checks
the prediction against refusal retention after benign fine-tuning. The flat API below covers
each step in a few lines (names load on first use, so `import skindeep` stays light):

- `load_model(source)` -> LoadedModel; `load_prompts(path)`, `organism_prompts(...)` -> PromptSet
- `audit_pair(aligned, base, harmful, harmless)`: the geometric audit (GFS, subspaces, ...)
- `measure_refusal(model, prompts)`: refusal rate (Wilson CI), refused/complied/degenerate
  counts and per-prompt verdicts
- `select_direction(model, ...)`: Arditi's refusal-direction selection
- `dose_response(model, bases, harmful, harmless)`: refusal against k ablated directions
- `ablate(model, harmful, harmless, eval_harmful, eval_harmless)`: bases + dose-response
- `run_retention(source, benign, harmful, harmless, config)`: refusal after benign fine-tuning

A notebook session on the micro zoo (`micro_dpo`, `micro_base`: loaded organisms):

>>> import skindeep
>>> harmful = skindeep.organism_prompts(True, "train", n=16)
>>> harmless = skindeep.organism_prompts(False, "train", n=16)
>>> audit = skindeep.audit_pair(micro_dpo, micro_base, harmful, harmless)
>>> 0 <= audit.peak_index < micro_dpo.adapter.num_layers
True
>>> held_out = skindeep.organism_prompts(True, "heldout", n=8)
>>> before = skindeep.measure_refusal(micro_dpo, held_out)
>>> before.counts.total
8
>>> from skindeep.finetune.data import organism_pairs
>>> config = skindeep.RetentionConfig(
...     ns=(5,), seeds=(0,), max_new_tokens=4, finetune=skindeep.FinetuneConfig(steps=2)
... )
>>> retained = skindeep.run_retention(micro_dpo.source, organism_pairs(), held_out, None, config)
>>> [(cell.n, cell.seed) for cell in retained.cells]
[(5, 0)]
"""

__version__ = "0.1.0"

import warnings as _warnings

from skindeep.lazy import lazy_exports as _lazy_exports

# peft (<= 0.21) reads transformers' deprecated `is_gradient_checkpointing` in get_peft_model,
# which prints a FutureWarning per LoRA model (once per zoo worker); it says nothing to users.
_warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

_EXPORTS = {
    "load_model": "skindeep.models",
    "LoadedModel": "skindeep.models",
    "load_prompts": "skindeep.prompts",
    "organism_prompts": "skindeep.prompts",
    "PromptSet": "skindeep.prompts",
    "audit_pair": "skindeep.scores",
    "AuditConfig": "skindeep.scores",
    "measure_refusal": "skindeep.evaluation",
    "RefusalMeasurement": "skindeep.evaluation",
    "GenerationOptions": "skindeep.evaluation",
    "select_direction": "skindeep.selection",
    "SelectionOptions": "skindeep.selection",
    "dose_response": "skindeep.dose",
    "DoseOptions": "skindeep.dose",
    "named_basis": "skindeep.dose",
    "ablate": "skindeep.dose",
    "AblateConfig": "skindeep.dose",
    "run_retention": "skindeep.finetune",
    "RetentionConfig": "skindeep.finetune",
    "FinetuneConfig": "skindeep.finetune",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
