"""skindeep: how deep is a model's safety alignment?

Reads the geometry of refusal in hidden states (aligned vs base), tests it causally, and checks
the prediction against refusal retention after benign fine-tuning.
"""

__version__ = "0.1.0"

import warnings as _warnings

# peft (<= 0.21) reads transformers' deprecated `is_gradient_checkpointing` in get_peft_model,
# which prints a FutureWarning per LoRA model (once per zoo worker); it says nothing to users.
_warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)
