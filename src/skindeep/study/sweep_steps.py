"""The robustness sweep's pipeline steps: GFS under the method's free choices, per model.

`run_sweep` recomputes GFS from the audit's cached activations (k, alpha, eps, weighting,
prompt count) and, with `sweep_formats`, from a collection in the other prompt format;
`run_sweep_last_layer` adds the last-layer convention (raw block output vs after the final
norm, as the Skin-Deep code reads it) from one more cached collection. Each is its own cached
step, so adding an axis never invalidates the others.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from skindeep.errors import SkindeepError
from skindeep.prompts import resolve_prompt_spec
from skindeep.study.config import StudyConfig


def _audit_arrays(done: dict) -> tuple:
    """(h_aligned, h_base, is_harmful) of the audit step's cached collections."""
    from skindeep.activations import ActivationStore
    from skindeep.study.sweep import store_arrays

    audit = done.get("audit") or {}
    if "stores" not in audit:
        raise SkindeepError("the sweep needs the audit step (steps.audit = true)")
    return store_arrays(ActivationStore(audit["stores"]["aligned"]),
                        ActivationStore(audit["stores"]["base"]))  # fmt: skip


def run_sweep(models: Any, config: StudyConfig, folder: Any, done: dict) -> dict:
    """GFS under each free choice, from the audit's cached activations (stats' `sweep_pair`);
    with `sweep_formats`, the other prompt format is collected (new forward passes)."""
    from skindeep.scores.audit import collect_pair
    from skindeep.study.sweep import convention_points, store_arrays, sweep_pair

    opts = config.sweep
    assert opts is not None
    arrays = _audit_arrays(done)
    points = sweep_pair(*arrays, opts)
    fmt = config.audit.fmt
    points += convention_points("fmt", fmt, *arrays, opts)
    if config.sweep_formats:
        other = "raw" if fmt == "chat" else "chat"
        p = config.prompts
        stores = collect_pair(
            models.get("aligned"), models.get("base"),
            resolve_prompt_spec(p.audit_harmful, harmful=True),
            resolve_prompt_spec(p.audit_harmless, harmful=False),
            config.audit.model_copy(update={"fmt": other}),
        )  # fmt: skip
        points += convention_points("fmt", other, *store_arrays(stores.aligned, stores.base), opts)
    return {"points": [asdict(pt) for pt in points]}


def run_sweep_last_layer(models: Any, config: StudyConfig, folder: Any, done: dict) -> dict:
    """Default-settings GFS with the last layer read raw and after the final norm: the audit's
    own collection gives one convention, a new cached collection the other."""
    from skindeep.scores.audit import collect_pair
    from skindeep.study.sweep import convention_points, store_arrays

    opts, audit = config.sweep, config.audit
    assert opts is not None
    if audit.site != "block_out":  # the final norm follows the last block's output only
        return {"points": [], "reason": "last_layer='normed' needs site='block_out'"}
    arrays = _audit_arrays(done)
    points = convention_points("last_layer", audit.last_layer, *arrays, opts)
    other = "normed" if audit.last_layer == "raw" else "raw"
    p = config.prompts
    stores = collect_pair(
        models.get("aligned"), models.get("base"),
        resolve_prompt_spec(p.audit_harmful, harmful=True),
        resolve_prompt_spec(p.audit_harmless, harmful=False),
        audit.model_copy(update={"last_layer": other}),
    )  # fmt: skip
    points += convention_points("last_layer", other, *store_arrays(stores.aligned, stores.base),
                                opts)  # fmt: skip
    return {"points": [asdict(pt) for pt in points]}
