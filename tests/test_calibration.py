"""MLP calibration: data, regularisers against numpy, a tiny `skindeep calibrate` run, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from skindeep.calibration.mlp import (
    MLP,
    REGION_SHARE,
    column_orthogonality_loss,
    make_data,
    stable_rank_loss,
)


def test_data_region_and_labels() -> None:
    data = make_data(40_000, torch.Generator().manual_seed(0))
    x = data.x.numpy()
    region = (x[:, :3] > 1).all(axis=1)
    task = x[:, 3] * x[:, 4] - x[:, 5] * x[:, 6] > 0
    np.testing.assert_array_equal(data.region.numpy(), region)
    np.testing.assert_array_equal(data.task.numpy(), task)
    np.testing.assert_array_equal(data.y.numpy(), task & ~region)
    assert region.mean() == pytest.approx(REGION_SHARE, abs=0.01)


def test_regularisers_match_numpy() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(128, 40))
    s = np.linalg.svd(m, compute_uv=False)
    stable = np.sum(s**2) / s[0] ** 2
    expected = max(0.0, 64 - stable) ** 2 / 64**2
    assert float(stable_rank_loss(torch.from_numpy(m))) == pytest.approx(expected, rel=1e-9)
    gram = m.T @ m
    fro2 = np.sum(m**2)
    expected = np.sum((gram - fro2 / 40 * np.eye(40)) ** 2) / fro2**2
    assert float(column_orthogonality_loss(torch.from_numpy(m))) == pytest.approx(
        expected, rel=1e-9
    )
    q = np.linalg.qr(rng.normal(size=(128, 100)))[0] * 3.0  # orthogonal, equal norms, sr = 100
    assert float(column_orthogonality_loss(torch.from_numpy(q))) == pytest.approx(0, abs=1e-12)
    assert float(stable_rank_loss(torch.from_numpy(q))) == 0.0


def test_mlp_affine_ablation_moves_coordinates_to_reference() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(8, 20)
    u = torch.linalg.qr(torch.randn(128, 2))[0]
    mu = torch.randn(128)
    _, hs = model(x, [None, None, (u, mu)])
    np.testing.assert_allclose(
        (hs[2] @ u).detach().numpy(), (mu @ u).expand(8, 2).numpy(), atol=1e-5
    )
    assert len(hs) == 3 and hs[0].shape == (8, 128)


def test_calibrate_cli_tiny(tmp_path, monkeypatch, capsys) -> None:
    args = ["calibrate", "--out", str(tmp_path), "--lambdas", "0,5", "--seeds", "1"]
    args += ["--base-steps", "30", "--align-steps", "10"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "calibration.json").read_text())
    assert [row["lam"] for row in doc["summary"]] == [0.0, 5.0]
    assert len(doc["runs"]) == 2 and "reproduced" in doc["verdict"]
    for run in doc["runs"]:
        for layer in (1, 2, 3):
            assert run[f"rho_l{layer}"] == pytest.approx(run[f"rank_l{layer}"] / 128)
        assert 0 <= run["safety_ablated_keps"] <= 1 and 0 <= run["task"] <= 1
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    assert "MLP calibration" in out


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--lambdas", "0,x"], "--lambdas"),
        (["--target", "bias"], "--target"),
        (["--eps", "2"], "--eps"),
    ],
)
def test_calibrate_bad_input(tmp_path, monkeypatch, capsys, extra, flag) -> None:
    code, _, err = run_cli(["calibrate", "--out", str(tmp_path), *extra], monkeypatch, capsys)
    assert code == 2 and "error:" in err and flag in err


def test_verdict_reads_the_numbers() -> None:
    from skindeep.calibration import verdict

    def row(lam: float, safety: float, kept: float, rho: float) -> dict:
        return {"lam": lam, "safety": safety, "retained_k3": kept, "rho_mean": rho}

    sweet = [row(0, 0.95, 0.0, 0.1), row(5, 0.9, 0.6, 0.3), row(500, 0.9, 0.1, 0.35)]
    assert verdict(sweet)["reproduced"] and verdict(sweet)["mild_lambda"] == 5
    unlearned = [row(0, 0.95, 0.0, 0.1), row(5, 0.9, 0.6, 0.3), row(500, 0.6, 0.9, 0.4)]
    assert verdict(unlearned)["reproduced"]  # strong lambda never learns safety: brittle
    flat = [row(0, 0.95, 0.0, 0.1), row(5, 0.9, 0.02, 0.3), row(500, 0.9, 0.01, 0.35)]
    found = verdict(flat)
    assert not found["reproduced"] and not found["mild_gain_over_zero"]
    assert "NOT reproduced" in found["text"] and "lambda=5: 0.02" in found["text"]
    lower_rho = [row(0, 0.95, 0.0, 0.1), row(5, 0.9, 0.6, 0.3), row(500, 0.9, 0.1, 0.2)]
    assert not verdict(lower_rho)["reproduced"]
