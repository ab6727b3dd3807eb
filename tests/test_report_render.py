"""The report renderer: documents from a study and from one model's folder, self-contained
HTML, Markdown, JSON and parquet that carry the source numbers, the verdict, and bad input."""

from __future__ import annotations

import json
import re
from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest

import report_fixtures as fx
from conftest import run_cli
from skindeep.report.build import ReportError, build_document, detect, render
from skindeep.report.document import fmt
from skindeep.report.study_figures import sweep_matrix, theil_sen_band
from skindeep.report.verdict import verdict
from skindeep.study.result import SettingStats


def _self_contained(html: str) -> None:
    """No script, no external stylesheet, font, image or link target."""
    assert "<script" not in html.lower()
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:", "#")), attr
    assert "url(" not in html and "@import" not in html


def test_fmt() -> None:
    assert [fmt(None), fmt(float("nan")), fmt(0.0), fmt(0.5), fmt(-0.33333), fmt(12.345)] == [
        "-",
        "-",
        "0",
        "0.5",
        "-0.333",
        "12.3",
    ]
    assert fmt(1.5e-5) == "1.5e-05" and fmt(True) == "yes" and fmt((0.25, None)) == "[0.25, -]"


def test_single_model_folder(tmp_path) -> None:
    folder = fx.model_folder(tmp_path / "run")
    assert detect(folder) == "audit+dose+retention"
    files = render(folder, tmp_path / "out")
    html = files.html.read_text()
    _self_contained(html)
    assert html.count("<figure data-plot=") == 3
    assert "Ablation dose-response: aligned0" in html  # the audit names the model
    assert html.count("data:image/png;base64,") == 3
    audit = json.loads((folder / "audit.json").read_text())
    layers = pq.read_table(tmp_path / "out" / "tables" / "audit_layers.parquet").to_pydict()
    assert layers["d_code"] == pytest.approx(audit["gfs"]["code"]["d"])
    assert layers["contribution_paper"] == pytest.approx(audit["gfs"]["paper"]["contribution"])
    dose = json.loads((folder / "dose.json").read_text())
    table = pq.read_table(tmp_path / "out" / "tables" / "dose.parquet").to_pydict()
    want = [p["refusal"]["rate"] for p in dose["curves"][0]["points"]]
    assert table["refusal"] == pytest.approx([dose["baseline"]["refusal"]["rate"], *want])
    assert table["null_refusal_max"][1:] == pytest.approx([n["rate"]["max"] for n in dose["nulls"]])
    ret = pq.read_table(tmp_path / "out" / "tables" / "retention.parquet").to_pydict()
    means = [r for r, s in zip(ret["refusal"], ret["seed"], strict=True) if s == "mean"]
    assert means == pytest.approx([0.85, 0.525])  # (18 + 16) / 40 and (9 + 12) / 40
    md = files.markdown.read_text()
    for fig in files.figures:
        assert f"figures/{fig.name}" in md and fig.stat().st_size > 1000
    assert json.loads(files.json.read_text())["tables"]["dose"]["rows"][0]["k"] == 0


def test_each_kind_alone(tmp_path) -> None:
    fx.dose_result(2.0).save(tmp_path / "dose")
    doc = build_document(tmp_path / "dose")
    assert doc.kind == "dose" and [p.name for p in doc.plots()] == ["dose"]
    assert doc.sections[0].title == "Ablation dose-response: dose"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study folder (study.json and per-model files), written once for the module."""
    return fx.study_folder(tmp_path_factory.mktemp("study"), fx.study())


def test_study_report(study_dir, tmp_path) -> None:
    result, folder = fx.study(), study_dir
    files = render(folder, tmp_path)
    folder = tmp_path
    html = files.html.read_text()
    _self_contained(html)
    names = re.findall(r'<figure data-plot="([^"]+)"', html)
    assert names == ["scatter", "layer_profiles", "dose_response", "refusal_curves", "sweep"]
    models = pq.read_table(folder / "tables" / "models.parquet").to_pydict()
    inc = result.included()
    order = [inc[i].name for i in np.argsort([-m.predictors["gfs_code"] for m in inc])]
    assert models["model"] == [*order, result.models[-1].name]  # excluded model last
    assert models["rank"] == [*range(1, len(inc) + 1), None]
    head = pq.read_table(folder / "tables" / "headline.parquet").to_pydict()
    assert head["predictor"] == ["gfs_code", "initial_refusal", "noise ceiling"]
    assert head["rho"][:2] == pytest.approx([result.stats[0].rho, result.stats[2].rho])
    assert head["rho"][2] == pytest.approx(0.9**0.5)
    seeds = pq.read_table(folder / "tables" / "fragility_per_seed.parquet").to_pydict()
    assert len(seeds["value"]) == 3 * len(result.models)
    assert verdict(result).headline in html
    prof = pq.read_table(folder / "tables" / "layer_profiles.parquet").to_pydict()
    assert sorted(set(prof["model"])) == sorted(m.name for m in result.models)
    audit = json.loads((study_dir / "models" / result.models[1].name / "audit.json").read_text())
    m1 = [i for i, name in enumerate(prof["model"]) if name == result.models[1].name]
    assert [prof["c"][i] for i in m1] == pytest.approx(audit["gfs"]["code"]["c"])
    assert json.loads(files.json.read_text())["numbers"]["verdict"] == verdict(result).headline


def test_verdict_states_the_result_whatever_it_is() -> None:
    strong = verdict(fx.study(n=13, baseline_strength=0.0))
    assert strong.headline.startswith("gfs_code ranks the 12 models by auc beyond chance")
    assert "larger |rho| than every baseline" in strong.details[0]
    result = fx.study(n=13)
    stats = [
        s.model_copy(update={"rho": 0.95, "ci": (0.9, 0.99)}) if s.kind == "baseline" else s
        for s in result.stats
    ]
    weak = verdict(result.model_copy(update={"stats": stats}))
    assert "does not beat initial_refusal" in weak.details[0]
    noisy = result.model_copy(
        update={
            "noise_ceiling": {
                "auc": result.noise_ceiling["auc"].model_copy(
                    update={"ceiling": 0.3, "reliability": 0.09}
                )
            }
        }
    )
    assert any("ranks models poorly" in d for d in verdict(noisy).details)
    p = result.stats[0].model_copy(update={"p_holm": 0.2, "p_perm": 0.04})
    chance = verdict(result.model_copy(update={"stats": [p, *result.stats[1:]]}))
    assert "does not rank" in chance.headline
    k = sum(1 for r in result.stats if r.kind == "predictor" and r.target == "auc")
    assert f"once corrected for testing {k} predictors" in chance.headline  # p_perm < 0.05
    twins = result.stats[0].model_copy(
        update={"by_setting": SettingStats(n_settings=6, rho=-0.4, ci=(-0.8, 0.1), p_perm=0.06)}
    )
    paired = verdict(result.model_copy(update={"stats": [twins, *result.stats[1:]]}))
    assert any(
        "replicate 6 settings" in d and "rho = -0.40, 95% CI [-0.80, +0.10]" in d
        for d in paired.details
    )
    assert not any("settings" in d for d in weak.details)
    assert "tentative" in verdict(fx.study(n=5)).details[-2]


def test_theil_sen_band_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    band = theil_sen_band(x, y)
    slopes = [(y[j] - y[i]) / (x[j] - x[i]) for i, j in combinations(range(12), 2)]
    assert band["slope"] == pytest.approx(np.median(slopes))
    assert np.all(band["low"] <= band["fit"] + 1e-12) and np.all(
        band["fit"] <= band["high"] + 1e-12
    )
    assert theil_sen_band(np.array([1.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])) is None


def test_flat_config() -> None:
    from skindeep.report.study import flat_config

    config = {"b": {"y": [1, 2], "x": {"deep": None}}, "a": "s", "c": {}}
    assert flat_config(config) == ['a = "s"', "b.x.deep = null", "b.y = [1, 2]", "c = {}"]


def test_sweep_matrix() -> None:
    labels, preds, rho = sweep_matrix(fx.study().sweep)
    assert labels == ["k = 1", "k = 4", "weighting = uniform"] and preds == ["gfs_code", "peak_d"]
    assert rho[1].tolist() == pytest.approx([-0.6, -0.3])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "holds none of study.json"),
        (lambda d: (d / "audit.json").write_text("{not json"), "audit.json: not a readable JSON"),
        (lambda d: (d / "study.json").write_text('{"models": []}'), "not a valid study.json"),
        (lambda d: (d / "dose.json").write_text('{"curves": []}'), "lacks an expected field"),
    ],
)
def test_bad_folders(tmp_path, setup, message) -> None:
    setup(tmp_path)
    with pytest.raises(ReportError, match=message):
        build_document(tmp_path)


def test_cli(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(["report", str(tmp_path / "missing")], monkeypatch, capsys)
    assert code == 2 and "error:" in err and "no such folder" in err
    fx.dose_result(2.0).save(tmp_path / "dose")
    out = ["--out", str(tmp_path / "r")]
    code, _, err = run_cli(["report", str(tmp_path / "dose"), *out], monkeypatch, capsys)
    assert code == 0 and "report.html" in err and (tmp_path / "r" / "report.md").is_file()
