"""The audit pipeline on the micro zoo: GFS against stored activations, refusal separation,
files, the activation cache, and the CLI's errors (exit code 2, one message, no traceback)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.numpy import load_file
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA

import skindeep.activations.cached as cached_module
from conftest import run_cli
from skindeep.activations import ActivationStore, activation_key
from skindeep.errors import ConfigError, PromptError
from skindeep.models import DeferredModel, LoadedModel, ModelAdapter, load_model
from skindeep.organisms.architectures import build_model
from skindeep.prompts import organism_prompts
from skindeep.report import write_audit
from skindeep.scores import (
    AuditConfig,
    AuditResult,
    PairMismatchError,
    audit_pair,
    check_compatible,
    model_info,
    pair_geometry,
)

N_PER_CLASS = 48  # 96 prompts > hidden size 64: the contrast matrix has no null space
RTOL = 1e-6
ALIGNED = ("micro-llama-sft-full", "micro-llama-sft-last1", "micro-llama-dpo")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private activation cache for this module."""
    return tmp_path_factory.mktemp("activations")


@pytest.fixture(scope="module")
def audits(micro_zoo, cache: Path) -> dict[str, AuditResult]:
    """Every aligned micro organism audited against its base on held-out organism prompts."""
    harmful = organism_prompts(True, "heldout", N_PER_CLASS)
    harmless = organism_prompts(False, "heldout", N_PER_CLASS)
    config = AuditConfig(n_perm=99, cache_dir=cache)
    out = {}
    for name in ALIGNED:
        organism = micro_zoo[name]
        aligned, base = load_model(organism.path), load_model(organism.meta["base_path"])
        out[name] = audit_pair(aligned, base, harmful, harmless, config)
    return out


def ref_cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    """|Cohen's d| with the pooled ddof=1 SD, written out; 0 for identical constant groups
    (a layer that alignment left untouched has D_l = 0)."""
    n1, n2 = len(x), len(y)
    pooled = ((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2)
    diff = abs(x.mean() - y.mean())
    return 0.0 if pooled == 0 and diff == 0 else diff / np.sqrt(pooled)


def ref_gfs(aligned: np.ndarray, base: np.ndarray, harmful: np.ndarray, variant: str) -> float:
    """GFS by scikit-learn PCA (code) or a dense eigendecomposition of the contrast (paper);
    layers with D_l = 0 contribute nothing (cov(aligned) = cov(base) there: no contrast)."""
    n_layers = aligned.shape[1]
    total = 0.0
    if variant == "code":
        w = np.linspace(0.5, 1.5, n_layers)
    else:
        w = np.arange(1, n_layers + 1) / n_layers
    w = w / w.sum()
    for layer in range(n_layers):
        a, b = aligned[:, layer].astype(np.float64), base[:, layer].astype(np.float64)
        diff = a - b
        if not diff.any():  # an untouched layer: no direction (in either variant), no effect
            continue
        if variant == "code":
            v = PCA(n_components=1, svd_solver="full").fit(diff).components_[0]
            proj = diff @ v
        else:
            v = np.linalg.eigh(np.cov(a.T) - 100.0 * np.cov(b.T))[1][:, -1]
            proj = a @ v
        refusal = a[harmful].mean(0) - a[~harmful].mean(0)
        c = abs(v @ refusal) / np.linalg.norm(refusal)
        total += w[layer] * ref_cohens_d(proj[harmful], proj[~harmful]) * (1 - c)
    return total


@pytest.mark.parametrize("name", ALIGNED)
def test_written_gfs_matches_recomputation_from_stored_activations(
    audits, name: str, tmp_path: Path
) -> None:
    doc = json.loads(write_audit(audits[name], tmp_path).results.read_text())
    stores = {k: ActivationStore(v) for k, v in doc["activations"]["stores"].items()}
    harmful = stores["aligned"].mask("harmful")
    assert np.array_equal(harmful, stores["base"].mask("harmful"))
    template = stores["aligned"].spec.template.split("#")[1]
    assert stores["base"].spec.template.endswith(f"#{template}")  # fed the aligned template
    a, b = stores["aligned"].array(), stores["base"].array()
    for variant in ("code", "paper"):
        expected = ref_gfs(a, b, harmful, variant)
        assert doc["gfs"][variant]["gfs"] == pytest.approx(expected, rel=RTOL, abs=1e-12)


def test_skin_deep_code_preset_is_gfs_from_output_hidden_states(micro_zoo, tmp_path: Path) -> None:
    """The preset reproduces the reference code's pipeline, recomputed here straight from
    `output_hidden_states[1:]` of unpadded raw prompts (last layer after the final norm), PC1 of
    D_l over all prompts and the code variant; every convention lands in audit.json."""
    organism = micro_zoo["micro-llama-sft-full"]
    aligned, base = load_model(organism.path), load_model(organism.meta["base_path"])
    harmful = organism_prompts(True, "heldout", 24)
    harmless = organism_prompts(False, "heldout", 24)
    config = AuditConfig.preset_config("skin-deep-code", n_perm=9, cache_dir=tmp_path / "acts")
    res = audit_pair(aligned, base, harmful, harmless, config)

    def hidden(lm: LoadedModel) -> np.ndarray:
        rows = []
        for text in [*harmful, *harmless]:
            ids = lm.tokenizer(text, return_tensors="pt")  # raw prompt, the tokenizer's specials
            with torch.no_grad():
                states = lm.model(**ids, output_hidden_states=True).hidden_states[1:]
            rows.append(torch.stack([h[0, -1] for h in states]).numpy())
        return np.stack(rows).astype(np.float64)

    a, b = hidden(aligned), hidden(base)
    is_harmful = np.arange(len(a)) < len(harmful)
    store = ActivationStore(res.stores["aligned"])
    assert np.array_equal(store.mask("harmful"), is_harmful)
    np.testing.assert_allclose(store.array(), a, atol=1e-4)
    assert res.gfs == pytest.approx(ref_gfs(a, b, is_harmful, "code"), rel=1e-4)
    assert res.config.variant == "code" and res.spec.fmt == "raw" and res.spec.template is None
    default = audit_pair(
        aligned, base, harmful, harmless, AuditConfig(fmt="raw", n_perm=9, cache_dir=tmp_path)
    )
    raw_last = ActivationStore(default.stores["aligned"]).layer(store.layers[-1])
    assert not np.allclose(raw_last, a[:, -1], atol=1e-2)  # the convention matters here
    doc = json.loads(write_audit(res, tmp_path / "out").results.read_text())
    conventions = doc["conventions"]
    assert conventions["preset"] == "skin-deep-code" and conventions["last_layer"] == "normed"
    assert conventions["format"] == "raw" and conventions["positions"] == "last"
    assert conventions["gfs_variant"] == "code" and conventions["layers"] == "all"
    assert (
        "PC1" in conventions["code_direction"]
        and "hidden_states[-1]" in conventions["last_layer_note"]
    )
    assert (
        doc["activations"]["last_layer"] == "normed" and doc["config"]["preset"] == "skin-deep-code"
    )


def test_presets_fix_their_settings() -> None:
    with pytest.raises(ValueError, match="sets \\['fmt'\\] itself"):
        AuditConfig.preset_config("skin-deep-code", fmt="chat")
    with pytest.raises(ValueError, match="preset 'skin-deep-code' sets"):
        AuditConfig(preset="skin-deep-code")  # chat format is not the code's convention
    with pytest.raises(ValueError, match="needs site='block_out'"):
        AuditConfig(site="block_in", last_layer="normed")
    assert AuditConfig.preset_config("skin-deep-code").last_layer == "normed"


@pytest.mark.parametrize("name", ALIGNED)
def test_every_micro_pair_has_a_separating_refusal_direction(audits, name: str) -> None:
    res = audits[name]
    store = ActivationStore(res.stores["aligned"])
    h, harmful = store.layer(res.peak_layer).astype(np.float64), store.mask("harmful")
    a = h[harmful].mean(0) - h[~harmful].mean(0)
    d = ref_cohens_d(h[harmful] @ a, h[~harmful] @ a)
    assert d > 2 and res.geometry.arditi_d[res.peak_index] == pytest.approx(d)
    assert res.geometry.arditi_d_heldout[res.peak_index] > 2  # also out of sample
    assert all(np.isfinite(g.gfs) for g in res.geometry.gfs.values())
    assert res.spec.site == "block_out" and res.spec.last_layer == "raw"


def test_alignment_depth_shows_in_the_per_layer_change(audits) -> None:
    """Last-layer-only alignment leaves earlier block outputs untouched; full SFT moves them."""
    shallow = audits["micro-llama-sft-last1"].geometry
    assert np.all(shallow.relative_change[:-1] == 0) and shallow.relative_change[-1] > 0
    assert np.all(shallow.cka[:-1] == pytest.approx(1.0))
    assert np.all(audits["micro-llama-sft-full"].geometry.relative_change > 0)


def test_files_exist_and_reload(audits, tmp_path: Path) -> None:
    res = audits["micro-llama-dpo"]
    files = write_audit(res, tmp_path)
    n_layers, d = len(res.geometry.layers), res.aligned.hidden_size
    tensors = load_file(str(files.directions))
    for key in ("v.code", "v.paper", "arditi"):
        assert tensors[key].shape == (n_layers, d)
    assert [tensors[f"subspace.{i}"].shape for i in res.geometry.layers] == [
        (int(k), d) for k in res.geometry.subspace.ks
    ]
    doc = json.loads(files.results.read_text())
    assert doc["models"]["aligned"]["fingerprint"] == res.aligned.fingerprint
    assert doc["models"]["base"]["fingerprint"] != res.aligned.fingerprint
    assert len(doc["principal_angles"]["radians"]) == n_layers - 1
    assert len(doc["layer_statistics"]["mmd_p_adjusted"]) == n_layers
    assert doc["layer_statistics"]["permanova_distance"] == "euclidean"  # the default, recorded
    for png in (files.profiles, files.spectra):
        assert png.stat().st_size > 1000


def test_rerun_reads_the_activation_cache(micro_zoo, audits, cache: Path, monkeypatch) -> None:
    def no_model_runs(*args, **kwargs):
        raise AssertionError("the model ran although the activations are cached")

    monkeypatch.setattr(cached_module, "collect", no_model_runs)
    organism = micro_zoo["micro-llama-dpo"]
    again = audit_pair(
        load_model(organism.path),
        load_model(organism.meta["base_path"]),
        organism_prompts(True, "heldout", N_PER_CLASS),
        organism_prompts(False, "heldout", N_PER_CLASS),
        AuditConfig(n_perm=99, cache_dir=cache),
    )
    assert again.gfs == audits["micro-llama-dpo"].gfs


def test_warm_audit_of_deferred_models_reads_no_weights(micro_zoo, audits, cache: Path) -> None:
    """A `lazy` load answers the cache key and the pair check from config + tokenizer alone: a
    warm audit never reads the weights and gives the eager audit's result and model facts."""
    organism = micro_zoo["micro-llama-dpo"]
    aligned = load_model(organism.path, lazy=True)
    base = load_model(organism.meta["base_path"], lazy=True)
    assert isinstance(aligned, DeferredModel) and isinstance(base, DeferredModel)
    again = audit_pair(
        aligned, base,
        organism_prompts(True, "heldout", N_PER_CLASS),
        organism_prompts(False, "heldout", N_PER_CLASS),
        AuditConfig(n_perm=99, cache_dir=cache),
    )  # fmt: skip
    assert "model" not in vars(aligned) and "model" not in vars(base)
    eager = audits["micro-llama-dpo"]
    assert again.gfs == eager.gfs
    assert (again.aligned, again.base) == (eager.aligned, eager.base)


def test_deferred_model_facts_match_the_loaded_model(micro_zoo) -> None:
    """For every micro organism the config-derived facts and cache key are those of the eager
    load, and first use of `.model` loads the same weights."""
    prompts = list(organism_prompts(True, "heldout", 4).prompts)
    for organism in micro_zoo.values():
        eager, lazy = load_model(organism.path), load_model(organism.path, lazy=True)
        assert isinstance(lazy, DeferredModel)
        assert model_info(lazy) == model_info(eager)
        key = activation_key(eager, prompts, fmt="chat")
        assert activation_key(lazy, prompts, fmt="chat") == key
        assert "model" not in vars(lazy)
        for a, b in zip(lazy.model.parameters(), eager.model.parameters(), strict=True):
            assert torch.equal(a, b)
        assert lazy.adapter.num_layers == eager.adapter.num_layers
        assert not lazy.model.training


# ---- mismatched pairs ----------------------------------------------------------------------


def _loaded(family: str, size: str, tokenizer) -> LoadedModel:
    """A random in-memory organism wrapped like `load_model` would."""
    model = build_model(family, size, tokenizer, seed=0).eval()
    name = f"{family}-{size}"  # the fingerprint stands for the weights: same name, same weights
    return LoadedModel(model, tokenizer, ModelAdapter(model, tokenizer), name, name)


def test_check_compatible_names_each_mismatch(organism_tokenizer) -> None:
    llama = _loaded("llama", "xs", organism_tokenizer)
    other = _loaded("llama", "xs", organism_tokenizer)
    check_compatible(llama, LoadedModel(other.model, other.tokenizer, other.adapter, "o", "g"))
    with pytest.raises(PairMismatchError, match="same checkpoint"):
        check_compatible(llama, other)
    with pytest.raises(PairMismatchError, match="architecture: aligned LlamaForCausalLM"):
        check_compatible(llama, _loaded("gpt2", "xs", organism_tokenizer))
    with pytest.raises(PairMismatchError, match="hidden size: aligned 64 vs base 96"):
        check_compatible(llama, _loaded("llama", "s", organism_tokenizer))
    tok = copy.deepcopy(organism_tokenizer)
    tok.add_tokens(["zzznewword"])
    with pytest.raises(PairMismatchError, match=r"tokenizer vocabulary: .*1 only in base"):
        check_compatible(llama, LoadedModel(llama.model, tok, llama.adapter, "x", "v"))


# ---- the CLI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sized_pair(tmp_path_factory, organism_tokenizer) -> tuple[Path, Path]:
    """Two saved random Llama organisms of different size (xs: 3 x 64, s: 4 x 96)."""
    root = tmp_path_factory.mktemp("sized")
    paths = []
    for size in ("xs", "s"):
        build_model("llama", size, organism_tokenizer, seed=0).save_pretrained(root / size)
        organism_tokenizer.save_pretrained(root / size)
        paths.append(root / size)
    return paths[0], paths[1]


def test_cli_mismatched_pair_exits_2(sized_pair, capsys, monkeypatch, tmp_path: Path) -> None:
    xs, s = sized_pair
    args = ["audit", "-a", str(xs), "-b", str(s), "-o", str(tmp_path / "out")]
    args += ["--harmful", "organism:heldout", "--harmless", "organism:heldout"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert "not an aligned/base pair" in err and "hidden size" in err
    assert "number of layers: aligned 3 vs base 4" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("harmful_text", "message"),
    [
        (None, "does not exist"),
        ("", "holds no prompts"),
        ("only one prompt\n", "at least 2 per class"),
        ("how do i bake bread ?\nwhat is a cat ?\n", "in both the harmful and the harmless"),
    ],
)
def test_cli_prompt_errors_exit_2(
    harmful_text: str | None, message: str, sized_pair, capsys, monkeypatch, tmp_path: Path
) -> None:
    harmful = tmp_path / "harmful.txt"
    if harmful_text is not None:
        harmful.write_text(harmful_text)
    harmless = tmp_path / "harmless.txt"
    harmless.write_text("how do i bake bread ?\nwhat is a dog ?\n")
    xs = str(sized_pair[0])
    args = ["audit", "-a", xs, "-b", xs, "--harmful", str(harmful), "--harmless", str(harmless)]
    code, _, err = run_cli([*args, "-o", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "10", "--select-alpha"], "--alpha or --select-alpha, not both"),
        (["--k", "2", "--eps", "0.1"], "--k or --eps, not both"),
        (["--layers", "0,x"], "comma-separated integers"),
        (["--harmful", "organism:test"], "expected organism:SPLIT-CLASS"),
        (["--harmful", "organism:heldout-harmless"], "names harmless prompts"),
    ],
)
def test_cli_option_errors_exit_2(extra, message, capsys, monkeypatch) -> None:
    args = ["audit", "-a", "/a", "-b", "/b", "--harmful", "organism:heldout"]
    args += ["--harmless", "organism:heldout", *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "skin-deep-code", "--format", "chat"], "drop --format chat"),
        (["--preset", "skin-deep-code", "--last-layer", "raw"], "sets --last-layer normed"),
        (["--site", "block_in", "--last-layer", "normed"], "needs site='block_out'"),
    ],
)
def test_cli_convention_errors_exit_2(micro_zoo, extra, message, capsys, monkeypatch) -> None:
    organism = micro_zoo["micro-llama-sft-last1"]
    args = ["audit", "-a", str(organism.path), "-b", organism.meta["base_path"]]
    args += ["--harmful", "organism:heldout", "--harmless", "organism:heldout", *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_writes_a_complete_audit(micro_zoo, capsys, monkeypatch, tmp_path: Path) -> None:
    organism = micro_zoo["micro-llama-sft-last1"]
    monkeypatch.setenv("SKINDEEP_CACHE", str(tmp_path / "cache"))
    args = ["audit", "-a", str(organism.path), "-b", organism.meta["base_path"]]
    args += ["--harmful", "organism:heldout", "--harmless", "organism:train", "-o", str(tmp_path)]
    args += ["--n-prompts", "12", "--n-perm", "20", "--variant", "paper", "--format", "raw"]
    args += [
        "--layers",
        "0,-1",
        "--select-alpha",
        "--k",
        "2",
        "--permanova-distance",
        "sqeuclidean",
    ]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "GFS paper (headline)" in out and "results in" in err
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["activations"]["layers"] == [0, 2] and doc["activations"]["format"] == "raw"
    assert doc["config"]["variant"] == "paper"
    # last-block alignment leaves block 0 untouched: no subspace there even with --k 2
    assert doc["subspace"]["k"] == [0, 2] and doc["subspace"]["empty"] == [True, False]
    assert doc["principal_angles"]["radians"] == [None]
    assert doc["gfs"]["paper"]["c"][0] is None and doc["gfs"]["paper"]["contribution"][0] == 0
    assert doc["prompts"]["harmless"]["source"].startswith("organism language: harmless")
    assert doc["alpha_selection"]["accuracy_by_layer"][0] == [None] * 8  # layer 0 not scored
    assert (tmp_path / "cache" / "activations").is_dir()
    assert "layers with D_l = 0" in out
    assert doc["layer_statistics"]["permanova_distance"] == "sqeuclidean"
    assert doc["config"]["permanova_distance"] == "sqeuclidean"


# ---- the pure glue -------------------------------------------------------------------------


def _separable(n: int = 30, n_layers: int = 2, d: int = 8) -> tuple[np.ndarray, ...]:
    """A pair whose classes any direction separates perfectly."""
    rng = np.random.default_rng(1)
    harmful = np.arange(n) < n // 2
    base = rng.normal(size=(n, n_layers, d))
    aligned = base + 0.1 * rng.normal(size=(n, n_layers, d))
    aligned[harmful] += 10.0
    return aligned, base, harmful


def test_alpha_selection_ties_keep_the_configured_alpha() -> None:
    aligned, base, harmful = _separable()
    geo = pair_geometry(aligned, base, harmful, AuditConfig(n_perm=9, select_alpha=True))
    assert np.all(geo.alpha_choice.accuracies == 1.0) and geo.alpha == 100.0
    assert geo.gfs["paper"].alpha == 100.0


def test_pair_geometry_rejects_what_users_can_fix() -> None:
    aligned, base, harmful = _separable()
    with pytest.raises(ConfigError, match="k=9 exceeds"):
        pair_geometry(aligned, base, harmful, AuditConfig(n_perm=9, k=9))
    with pytest.raises(PromptError, match="per class"):
        pair_geometry(aligned, base, np.arange(30) == 0, AuditConfig(n_perm=9))


def test_difference_tests_skip_layers_alignment_left_untouched() -> None:
    aligned, base, harmful = _separable()
    aligned[:, 0] = base[:, 0]  # like last-layer-only alignment: D_0 = 0
    geo = pair_geometry(aligned, base, harmful, AuditConfig(n_perm=9, stats_on="difference"))
    assert np.isnan(geo.stats.mmd_p[0]) and not geo.stats.mmd_reject[0]
    assert geo.stats.mmd_p_adjusted[1] == geo.stats.mmd_p[1]  # BH over the one testable layer
    assert geo.relative_change[0] == 0 and geo.gfs["code"].d[0] == 0


def test_untouched_layers_have_no_subspace_angles_or_gfs_share() -> None:
    aligned, base, harmful = _separable(n_layers=4)
    aligned[:, :2] = base[:, :2]  # like last-blocks-only alignment: D_0 = D_1 = 0
    geo = pair_geometry(aligned, base, harmful, AuditConfig(n_perm=9, select_alpha=True))
    np.testing.assert_array_equal(geo.empty, [True, True, False, False])
    assert geo.subspace.ks[:2].tolist() == [0, 0] and geo.subspace.ks[2:].min() >= 1
    assert geo.angles[0] is None and geo.angles[1] is None  # undefined, not a recurrence of 0
    ref = np.sort(scipy.linalg.subspace_angles(*geo.subspace.bases[2:]))
    np.testing.assert_allclose(geo.angles[2], ref, atol=1e-10)
    for res in geo.gfs.values():
        assert np.isnan(res.c[:2]).all() and res.contribution[:2].tolist() == [0.0, 0.0]
    assert np.isnan(geo.alpha_choice.accuracies[:2]).all()  # not scored: nothing to contrast
    np.testing.assert_allclose(
        geo.alpha_choice.mean_accuracy, geo.alpha_choice.accuracies[2:].mean(axis=0)
    )


def trace_f(X: np.ndarray, labels: np.ndarray) -> float:
    """Classical one-way multivariate trace F from group centroids (no distances at all)."""
    groups = np.unique(labels)
    grand = X.mean(axis=0)
    ssb = sum((labels == g).sum() * np.sum((X[labels == g].mean(0) - grand) ** 2) for g in groups)
    ssw = sum(np.sum((X[labels == g] - X[labels == g].mean(0)) ** 2) for g in groups)
    return (ssb / (len(groups) - 1)) / (ssw / (len(X) - len(groups)))


def pseudo_f_from(delta2: np.ndarray, labels: np.ndarray) -> float:
    """Anderson (2001) pseudo-F from condensed squared dissimilarities delta^2 (scipy pdist)."""
    n = len(labels)
    i, j = np.triu_indices(n, 1)
    same = labels[i] == labels[j]
    sizes = {g: int((labels == g).sum()) for g in np.unique(labels)}
    ss_t = delta2.sum() / n
    ss_w = sum(delta2[same & (labels[i] == g)].sum() / m for g, m in sizes.items())
    a = len(sizes)
    return ((ss_t - ss_w) / (a - 1)) / (ss_w / (n - a))


def test_permanova_default_is_the_spec_pseudo_f_on_squared_euclidean_distances() -> None:
    rng = np.random.default_rng(5)
    n, d = 30, 6
    harmful = np.arange(n) < n // 2
    base = rng.normal(size=(n, 2, d))
    aligned = base + 0.5 * rng.normal(size=(n, 2, d))
    aligned[harmful, :, 0] += 0.8
    geo = pair_geometry(aligned, base, harmful, AuditConfig(n_perm=9))
    sq = pair_geometry(
        aligned, base, harmful, AuditConfig(n_perm=9, permanova_distance="sqeuclidean")
    )
    assert geo.permanova_distance == "euclidean" and sq.permanova_distance == "sqeuclidean"
    for layer in range(2):
        x = aligned[:, layer]
        assert geo.stats.pseudo_f[layer] == pytest.approx(trace_f(x, harmful), rel=1e-10)
        d2 = pdist(x, "sqeuclidean")
        assert geo.stats.pseudo_f[layer] == pytest.approx(pseudo_f_from(d2, harmful), rel=1e-10)
        assert sq.stats.pseudo_f[layer] == pytest.approx(pseudo_f_from(d2**2, harmful), rel=1e-10)
