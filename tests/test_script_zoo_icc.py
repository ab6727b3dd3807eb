"""benchmarks/zoo_icc.py's ICC(1) against an independent route (the one-way ANOVA F of scipy)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import f_oneway

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_icc.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("zoo_icc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("k", [2, 3, 8])
def test_icc1_matches_the_anova_f_form(script, k: int) -> None:
    """ICC(1) = (F - 1) / (F + k - 1), F the one-way ANOVA of the groups (balanced design)."""
    rng = np.random.default_rng(k)
    table = rng.normal(size=(15, 1)) + rng.normal(scale=0.7, size=(15, k))
    f = f_oneway(*table).statistic
    assert script.icc1(table) == pytest.approx((f - 1) / (f + k - 1), rel=1e-12)


def test_main_uses_only_organisms_at_every_seed(script, tmp_path, monkeypatch, capsys) -> None:
    """An organism missing a build seed is left out and named; the rest give the printed ICC."""
    table = np.array([[1.0, 1.2], [2.0, 2.5], [4.0, 3.5]])
    rows = [
        {"organism": f"o{i}", "build_seed": s, "gfs_code": float(table[i, j])}
        for i in range(3)
        for j, s in enumerate((0, 1))
    ] + [{"organism": "half", "build_seed": 0, "gfs_code": 9.0}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    monkeypatch.setattr(sys, "argv", ["zoo_icc.py", str(path), "--columns", "gfs_code"])
    script.main()
    out = capsys.readouterr().out
    assert f"ICC(1) {script.icc1(table):+.2f}" in out
    assert f"of log {script.icc1(np.log(table)):+.2f}" in out
    assert "3 organisms" in out and "left out, not at every seed: half" in out
