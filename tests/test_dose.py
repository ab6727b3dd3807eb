"""Dose-response: bases from files and activations, the null band, weights, and the done-when
check that ablating Arditi's selected direction removes refusal on every aligned micro organism."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import save_file

from skindeep.dose import (
    BasisError,
    DoseCurve,
    DoseOptions,
    DosePoint,
    DoseResponse,
    NullBand,
    activation_basis,
    dose_response,
    load_basis,
    named_basis,
    weight_check,
)
from skindeep.evaluation import (
    GenerationOptions,
    KeywordJudge,
    OutcomeCounts,
    Verdict,
    generate_responses,
    refusal_rate,
)
from skindeep.interventions import ablate
from skindeep.models import load_model
from skindeep.prompts import organism_prompts
from skindeep.selection import SelectionOptions, select_direction

ALIGNED = ("micro-llama-sft-full", "micro-llama-sft-last1", "micro-llama-dpo")


@pytest.fixture(scope="module")
def dpo(micro_zoo):
    """The DPO micro organism, loaded once."""
    return load_model(micro_zoo["micro-llama-dpo"].path)


def test_load_basis_shapes_and_errors(tmp_path) -> None:
    """[d], [d, k], [L, d] with a layer; clear errors for keys, shapes and missing layers."""
    rng = np.random.default_rng(0)
    d = 8
    path = tmp_path / "dirs.safetensors"
    tensors = {
        "vec": rng.standard_normal(d),
        "cols": rng.standard_normal((d, 3)),
        "rows": rng.standard_normal((4, d)),
        "odd": rng.standard_normal((5, 7)),
    }
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(path))
    assert load_basis(path, d, "vec").k_max == 1
    cols = load_basis(path, d, "cols")
    assert cols.k_max == 3 and np.allclose(cols.basis.T @ cols.basis, np.eye(3), atol=1e-6)
    row = load_basis(path, d, "rows", layer=2)
    assert abs(row.basis[:, 0] @ tensors["rows"][2] / np.linalg.norm(tensors["rows"][2])) > 0.999
    for key, layer, message in [
        (None, None, "pick one with --key: cols, odd, rows, vec"),
        ("nope", None, "no tensor 'nope'"),
        ("rows", None, "choose one with --layer"),
        ("rows", 9, "out of range"),
        ("odd", None, "expected \\[8\\], \\[8, k\\]"),
    ]:
        with pytest.raises(BasisError, match=message):
            load_basis(path, d, key, layer)
    with pytest.raises(BasisError, match="does not exist"):
        load_basis(tmp_path / "missing.safetensors", d)
    # directions saved from torch in bfloat16 (which numpy cannot represent) load too
    import torch
    from safetensors.torch import save_file as save_torch

    bf16 = tmp_path / "bf16.safetensors"
    save_torch({"direction": torch.as_tensor(tensors["vec"]).to(torch.bfloat16)}, str(bf16))
    got = load_basis(bf16, d).basis[:, 0]
    want = torch.as_tensor(tensors["vec"]).to(torch.bfloat16).double().numpy()
    assert abs(got @ want / np.linalg.norm(want)) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(BasisError, match="k=4 is larger than the 3"):
        cols.first(4)


def _point(k: int, refused: int, complied: int, degenerate: int, kl: float = 0.0) -> DosePoint:
    """A dose point with these counts (the rate excludes degenerate outputs)."""
    verdicts = (
        [Verdict(True, None)] * refused
        + [Verdict(False, None)] * complied
        + [Verdict(False, "degenerate")] * degenerate
    )
    counts = OutcomeCounts(refused, complied, degenerate)
    return DosePoint(k, refusal_rate(verdicts), counts, 0.0, kl, "")


def test_causal_test_counts_degenerate_outputs_against_the_ablation() -> None:
    """Issue 9's case: 64 prompts, all refused before; ablated 14 refused, 18 complied and 32
    degenerate. Excluding the degenerate ones gives a drop of 1 - 14/32 = 0.56; counted
    against the ablation it is 1 - 46/64 = 0.28. A null with degenerate outputs counts them
    as removed refusals (drop 0.25), so a null that breaks the model fails the test."""
    base = _point(0, 64, 0, 0)
    ablated = _point(1, 14, 18, 32, kl=0.01)
    nulls = (_point(1, 64, 0, 0), _point(1, 48, 0, 16), _point(1, 62, 2, 0))
    result = DoseResponse(
        base, (DoseCurve("b", "test", 1, (ablated,)),), (NullBand(1, nulls),), DoseOptions(), 64, 8
    )
    test = result.causal_test("b")
    assert ablated.refusal.rate == pytest.approx(14 / 32)
    assert test.drop == pytest.approx(1 - 46 / 64)
    assert test.null_drop == pytest.approx(16 / 64)
    assert (test.degenerate, test.total, test.passed) == (32, 64, False)
    clean = DoseResponse(
        base,
        (DoseCurve("b", "test", 1, (_point(1, 3, 61, 0, kl=0.05),)),),
        (NullBand(1, (nulls[0], nulls[2], nulls[0])),),
        DoseOptions(),
        64,
        8,
    ).causal_test("b")
    assert clean.drop == pytest.approx(61 / 64) and clean.null_drop == pytest.approx(2 / 64)
    assert clean.passed
    assert not replace(clean, kl=0.2).passed and not replace(clean, kl=None).passed
    with pytest.raises(ValueError, match="no denominator"):
        OutcomeCounts(0, 0, 0).refusal_share("refusal")


def test_dose_response_band_files_and_weights(dpo, tmp_path) -> None:
    """Curve points equal a direct measurement; the null band spans its draws; files written."""
    harmful = list(organism_prompts(True, "heldout", n=8, seed=1))
    harmless = list(organism_prompts(False, "heldout", n=8, seed=1))
    basis = named_basis("rand", np.random.default_rng(5).standard_normal((64, 2)), "test")
    opts = DoseOptions(ks=(1, 2), n_random=3, max_new_tokens=8, batch_size=8)
    result = dose_response(dpo, [basis], harmful, harmless, opts)
    assert result.baseline.k == 0 and result.baseline.kl == pytest.approx(0.0, abs=1e-9)
    with ablate(dpo.model, dpo.adapter, basis.first(2)):
        gen = GenerationOptions(max_new_tokens=8, batch_size=8)
        responses = generate_responses(dpo.model, dpo.tokenizer, harmful, gen)
    direct = refusal_rate(KeywordJudge().judge(harmful, responses))
    assert result.curve("rand").points[1].refusal == direct
    point = result.curve("rand").points[1]
    counts = point.counts
    assert counts.total == len(harmful)
    assert (counts.refused, counts.degenerate) == (direct.n_refused, direct.n_flagged)
    for null in result.nulls:
        assert len(null.draws) == 3
        scores = [p.score for p in null.draws]
        band = null.band("score")
        assert (band["min"], band["max"]) == (min(scores), max(scores))
        assert band["mean"] == pytest.approx(float(np.mean(scores)))
        assert max(scores) > min(scores)  # each draw ablates a different random subspace
    data_path, png = result.save(tmp_path)
    data = json.loads(data_path.read_text())
    assert [p["k"] for p in data["curves"][0]["points"]] == [1, 2]
    assert data["nulls"][1]["rate"]["max"] == max(p.refusal.rate for p in result.null(2).draws)
    assert data["curves"][0]["points"][1]["counts"] == counts.to_json()
    assert data["curves"][0]["causal_test"]["k"] == 1
    assert png.stat().st_size > 1000
    gap = weight_check(dpo.model, dpo.tokenizer, dpo.adapter, basis.first(2), harmful)
    assert gap < 1e-4


def test_activation_bases(dpo, micro_zoo) -> None:
    """pca/cpca need a base, svd falls back to M_aligned; bases are orthonormal, layer chosen."""
    base = load_model(micro_zoo["micro-llama"].path)
    harmful = list(organism_prompts(True, "train", n=12, seed=2))
    harmless = list(organism_prompts(False, "train", n=12, seed=2))
    for kind, ref in [
        ("pca", base),
        ("cpca", base),
        ("svd", base),
        ("svd", None),
        ("svd-did", base),
    ]:
        b = activation_basis(kind, dpo, harmful, harmless, ref, k_max=3)  # type: ignore[arg-type]
        assert b.k_max == 3 and 0 <= (b.layer or 0) < dpo.adapter.num_layers
        assert np.allclose(b.basis.T @ b.basis, np.eye(3), atol=1e-8)
    with pytest.raises(BasisError, match="pass a base model"):
        activation_basis("pca", dpo, harmful, harmless)
    # svd-did is the SVD of M_DiD = M_template[harmful] - mean(M_template[harmless]) (numpy)
    from skindeep.dose.activation import last_token_activations as _activations

    did = activation_basis("svd-did", dpo, harmful, harmless, base, layer=1, k_max=2)
    prompts = [*harmful, *harmless]
    h_a = _activations(dpo, prompts, "chat", None, 16)[:, 1].astype(np.float64)
    h_b = _activations(base, prompts, "chat", dpo.tokenizer, 16)[:, 1].astype(np.float64)
    M = h_a - h_b
    u = np.linalg.svd((M[:12] - M[12:].mean(axis=0)).T, full_matrices=False)[0][:, :2]
    assert np.allclose(np.abs(np.sum(did.basis * u, axis=0)), 1.0, atol=1e-6)
    plain = activation_basis("svd", dpo, harmful, harmless, base, layer=1, k_max=1)
    assert abs(plain.basis[:, 0] @ did.basis[:, 0]) < 0.999  # a different matrix


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            "micro-llama-sft-full",
            marks=pytest.mark.xfail(
                strict=True,
                reason="counted honestly (issue 9), the ablated organism breaks: 27 of 48 "
                "held-out generations are degenerate ('here is you you you ...'), so the drop is "
                "0.44, not >= 0.8 (it read 1.00 while degenerate outputs left the denominator)",
            ),
        ),
        pytest.param(
            "micro-llama-sft-last1",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known gap (issue #4): the last-block-only organism's direction, found on "
                "training topics, removes 0.74 of held-out refusal (not 0.8), random nulls remove "
                "0.23, harmless KL 0.15",
            ),
        ),
        "micro-llama-dpo",
    ],
)
def test_selected_direction_removes_refusal(micro_zoo, name: str) -> None:
    """Done-when: ablating the selected direction drops held-out refusal by >= 0.8, random
    nulls of the same k by < 0.1, and harmless KL stays < 0.1. Affine ablation: the organisms'
    harmless activations sit far from zero along the direction (projection to zero makes
    harmless prompts refuse; see BENCHMARKS.md), as Marshall et al. (2024) found in real models."""
    lm = load_model(micro_zoo[name].path)
    harmful = organism_prompts(True, "train", n=96, seed=0).prompts
    harmless = organism_prompts(False, "train", n=96, seed=0).prompts
    sel = select_direction(
        lm,
        harmful[:64],
        harmless[:64],
        harmful[64:],
        harmless[64:],
        SelectionOptions(batch_size=32, ablation="affine"),
    )
    scores = [
        f"L{c.layer}/{c.position}: abl {c.ablation_score:.2f} steer {c.steering_score:.2f} "
        f"KL {c.kl:.3f} {','.join(c.reasons) or 'pass'}"
        for c in sel.candidates
        if c.norm > 0
    ]
    if sel.chosen is None:
        pytest.fail(f"{name}: no candidate passed Arditi's filters: {'; '.join(scores)}")
    eval_harmful = list(organism_prompts(True, "heldout", n=48, seed=0))
    eval_harmless = list(organism_prompts(False, "heldout", n=48, seed=0))
    basis = named_basis("arditi", sel.direction, "selected", sel.best.layer)
    opts = DoseOptions(ks=(1,), n_random=3, max_new_tokens=20, batch_size=48)
    res = dose_response(
        lm,
        [basis],
        eval_harmful,
        eval_harmless,
        opts,
        ablation=sel.ablation,
    )
    test = res.causal_test("arditi")
    report = f"{name}: {test}; candidates {'; '.join(scores)}"
    assert test.drop >= 0.8, report
    assert test.null_drop < 0.1, report
    assert test.kl is not None and test.kl < 0.1, report
