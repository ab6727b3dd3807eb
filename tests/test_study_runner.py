"""The study runner on the micro zoo: study.json, resuming after SIGKILL, Ray, the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from skindeep.study.config import StudyConfig, load_study_config
from skindeep.study.result import StudyResult
from skindeep.study.runner import run_study


def _numbers(result: StudyResult) -> dict:
    """Everything a study measured, without timings."""
    d = result.model_dump(mode="json")
    d["settings"].pop("wall_seconds")
    d["settings"].pop("workers")
    d["settings"].pop("executor")
    for m in d["models"]:
        for key in ("seconds", "aligned", "base"):  # paths differ between caches
            m.pop(key)
    return d


@pytest.fixture(scope="module")
def micro_study(micro_zoo, tmp_path_factory) -> tuple[StudyConfig, Path, StudyResult]:
    """The packaged micro study, run once into a fresh step cache."""
    root = tmp_path_factory.mktemp("study-root")
    config = load_study_config("micro")
    out = tmp_path_factory.mktemp("study-out")
    return config, root, run_study(config, out, root=root)


def test_study_json_has_every_model_and_figure(micro_study, micro_zoo):
    config, _, result = micro_study
    assert [m.name for m in result.models] == [
        "micro-llama-sft-full", "micro-llama-sft-last1", "micro-llama-dpo",
    ]  # fmt: skip
    for m in result.models:
        assert m.excluded is None and m.meets_behaviour
        assert set(m.predictors) == {
            "gfs_code", "gfs_paper", "d_peak", "c_peak", "arditi_d_peak",
            "ablation_drop", "ablation_kl", "rho_template", "rho_did", "cos_did_peak", "gap_share",
        }  # fmt: skip
        assert set(m.fragility) == {"auc", "retention", "steps_to_half", "keyword_retention"}
        assert [c.seed for c in m.curves] == list(config.tracking.seeds)
        assert m.curves[0].steps == config.tracking.checkpoints()
        # auc and retention from the soft refusal curve, by hand
        for c in m.curves:
            rel = np.array(c.prob) / c.prob[0]
            auc = np.trapezoid(rel, c.steps) / (c.steps[-1] - c.steps[0])
            assert m.fragility["auc"].per_seed[str(c.seed)] == pytest.approx(auc)
            assert m.fragility["retention"].per_seed[str(c.seed)] == pytest.approx(rel[-1])
        assert m.baselines["refusal_margin"] == pytest.approx(m.curves[0].score[0])
        assert m.baselines["log_params"] == pytest.approx(math.log(m.params))
        # relative weight change against the checkpoints' tensors
        from safetensors.numpy import load_file

        a = load_file(str(Path(m.aligned) / "model.safetensors"))
        b = load_file(str(Path(m.base) / "model.safetensors"))
        num = sum(float(((a[k].astype(np.float64) - b[k]) ** 2).sum()) for k in a if k in b)
        den = sum(float((b[k].astype(np.float64) ** 2).sum()) for k in a if k in b)
        assert m.baselines["weight_change"] == pytest.approx(math.sqrt(num / den), rel=1e-6)
    # the sweep: every free choice, both formats (raw collected anew), each over the 3 models
    settings = {(r.setting, r.value) for r in result.sweep}
    assert {
        ("default", "-"),
        ("k", "2"),
        ("weighting", "uniform"),
        ("eps", "0.05"),
        ("alpha", "10"),
        ("n_prompts", "16"),
        ("fmt", "chat"),
        ("fmt", "raw"),
        ("last_layer", "raw"),
        ("last_layer", "normed"),
    } <= settings
    assert all(r.n_models == 3 for r in result.sweep)
    # three models are below the statistics' minimum: every rho is undefined, never NaN
    assert result.stats and all(r.rho is None for r in result.stats)
    assert "could not be correlated" in result.headline


def test_dose_step_writes_the_reports_dose_json(micro_study, micro_zoo, tmp_path):
    """steps.dose: refusal against k of the PCA basis with 3 nulls per k, baseline checked
    against greedy decoding one prompt at a time and the keyword list; the report draws it."""
    import torch

    from skindeep.evaluation.phrases import REFUSAL_KEYWORDS
    from skindeep.models.loading import load_model
    from skindeep.prompts import resolve_prompt_spec
    from skindeep.report.build import render

    config, root, _ = micro_study
    out = tmp_path / "out"
    result = run_study(config, out, root=root)  # warm: dose.json copied from the step cache
    d = config.dose
    for m in result.models:
        dose = json.loads((out / "models" / m.name / "dose.json").read_text())
        assert [c["name"] for c in dose["curves"]] == ["pca"]
        ks = [p["k"] for p in dose["curves"][0]["points"]]
        assert ks == [1, 2, 4] and dose["options"]["ks"] == ks
        assert [n["k"] for n in dose["nulls"]] == ks
        assert all(len(n["draws"]) == 3 for n in dose["nulls"])
        assert dose["n_harmful"] == d.n_harmful and dose["n_harmless"] == d.n_harmless
        assert dose["ablation"] == config.ablation_form
        for pt in [dose["baseline"], *dose["curves"][0]["points"]]:
            c = pt["counts"]  # degenerate outputs counted apart, never dropped
            assert c["refused"] + c["complied"] + c["degenerate"] == c["total"] == d.n_harmful
        # the baseline (nothing ablated), by hand: greedy, one prompt at a time, keyword match
        lm = load_model(m.aligned)
        prompts = list(resolve_prompt_spec(config.prompts.eval_harmful, harmful=True))
        refused = 0
        for text in prompts[: d.n_harmful]:
            ids = lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True,
                return_tensors="pt", return_dict=True,
            )["input_ids"]  # fmt: skip
            with torch.no_grad():
                gen = lm.model.generate(ids, max_new_tokens=d.max_new_tokens, do_sample=False,
                                        pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip
            reply = lm.tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)
            reply = reply.replace("\u2019", "'").lower()
            refused += any(k.lower() in reply for k in REFUSAL_KEYWORDS)
        counts = dose["baseline"]["counts"]
        assert counts["refused"] + counts["degenerate"] >= refused >= counts["refused"]
    html = render(out).html.read_text()
    assert 'id="dose_response"' in html or "dose_response" in html
    assert "No models/NAME/dose.json" not in html


def test_last_layer_sweep_point_is_gfs_after_the_final_norm(micro_study):
    """The normed point: GFS of the audit's activations with the last layer passed through
    the model's own final norm; the raw point is the default (the audit's convention)."""
    import torch

    from skindeep.activations import ActivationStore
    from skindeep.models.loading import load_model
    from skindeep.study.jobs import model_jobs
    from skindeep.study.pipeline import cached_record
    from skindeep.study.sweep import default_gfs, store_arrays

    config, root, _ = micro_study
    job = model_jobs(config)[0]
    record = cached_record(job, config, root)
    assert record is not None
    pts = {(p["setting"], p["value"], p["predictor"]): p["gfs"]
           for p in record["sweep"]["points"] + record["sweep_last_layer"]["points"]}  # fmt: skip
    stores = record["audit"]["stores"]
    h_a, h_b, harmful = store_arrays(ActivationStore(stores["aligned"]),
                                     ActivationStore(stores["base"]))  # fmt: skip
    normed = []
    for h, source in ((h_a, job.aligned), (h_b, job.base)):
        norm = load_model(source).model.model.norm
        h = np.array(h, dtype=np.float64)
        with torch.no_grad():
            h[:, -1] = norm(torch.tensor(h[:, -1], dtype=torch.float32)).double().numpy()
        normed.append(h)
    want = default_gfs(*normed, harmful, config.sweep)
    for name in ("gfs_code", "gfs_paper"):
        assert pts[("last_layer", "raw", name)] == pytest.approx(pts[("default", "-", name)])
        assert pts[("last_layer", "normed", name)] == pytest.approx(want[name], rel=1e-3)
        assert pts[("last_layer", "normed", name)] != pytest.approx(pts[("default", "-", name)])


def test_rerun_reads_every_step_from_the_cache(micro_study, tmp_path, monkeypatch):
    config, root, first = micro_study
    import skindeep.study.pipeline as pipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded although every step is cached")

    monkeypatch.setattr(pipeline, "load_model", no_loading)
    again = run_study(config, tmp_path, root=root)
    assert _numbers(again) == _numbers(first)


def _drop_step(config: StudyConfig, root: Path, names: list[str], step: str) -> None:
    """Delete one cached step record of each named model (they must be recomputed)."""
    from skindeep.study.jobs import model_jobs
    from skindeep.study.pipeline import step_folder, step_record_path

    for job in model_jobs(config):
        if job.name in names:
            step_record_path(step_folder(job, config, root), step, config).unlink()


def test_warm_study_starts_no_worker_process(micro_study, tmp_path, monkeypatch):
    """Every step cached: the parent reads the records; no pool, no Ray, no model loaded."""
    config, root, first = micro_study
    import skindeep.study.executors as executors
    import skindeep.study.pipeline as pipeline

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started although every step is cached")

    monkeypatch.setattr(executors, "process_pool", no_pool)
    monkeypatch.setattr(executors, "run_pipeline", no_pool)
    monkeypatch.setattr(pipeline, "load_model", no_pool)
    seen: list[tuple[str, int, int]] = []
    again = run_study(config, tmp_path, workers=2, root=root,
                      report=lambda *a: seen.append(a))  # fmt: skip
    assert _numbers(again) == _numbers(first)
    assert [s[1:] for s in seen] == [(1, 3), (2, 3), (3, 3)]


def test_only_models_with_missing_steps_go_to_workers(micro_study, tmp_path, monkeypatch):
    """Two models miss a step: a pool of two workers runs exactly those two pipelines."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    import skindeep.study.executors as executors

    config, root, first = micro_study
    warm = tmp_path / "root"
    shutil.copytree(root, warm)
    missing = ["micro-llama-sft-full", "micro-llama-dpo"]
    _drop_step(config, warm, missing, "info")
    pools: list[int] = []
    submitted: list[str] = []

    @contextmanager
    def thread_pool(workers, initializer=None):  # records what the parent asked for
        pools.append(workers)
        with ThreadPoolExecutor(workers) as pool:
            submit = pool.submit

            def spy(fn, job, *args):
                submitted.append(job.name)
                return submit(fn, job, *args)

            pool.submit = spy  # type: ignore[method-assign]
            yield pool

    monkeypatch.setattr(executors, "process_pool", thread_pool)
    again = run_study(config, tmp_path / "out", workers=4, root=warm)
    assert pools == [2] and sorted(submitted) == sorted(missing)
    assert _numbers(again) == _numbers(first)
    # one model missing: it runs in this process, no pool
    _drop_step(config, warm, ["micro-llama-sft-last1"], "info")
    run_study(config, tmp_path / "out2", workers=4, root=warm)
    assert pools == [2]


def test_ray_executor_gives_the_same_numbers(micro_study, tmp_path):
    pytest.importorskip("ray")
    import shutil

    config, root, first = micro_study
    warm = tmp_path / "root"
    shutil.copytree(root, warm)
    _drop_step(config, warm, ["micro-llama-dpo"], "info")  # a warm study starts no cluster
    result = run_study(config, tmp_path / "out", executor="ray", root=warm)
    assert _numbers(result) == _numbers(first)
    assert result.settings.executor == "ray"


def _study_env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "SKINDEEP_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def _children(pid: int) -> list[int]:
    """Child process ids (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(c) for c in text.split()]
    return found


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_study_resumes_with_identical_numbers(micro_study, micro_zoo, tmp_path):
    """SIGKILL mid-run, restart: finished steps are not redone, the numbers equal a clean run."""
    _, _, clean = micro_study
    cache = tmp_path / "cache"
    cache.mkdir()
    organisms = Path(next(iter(micro_zoo.values())).path).parent
    (cache / "organisms").symlink_to(organisms)
    from skindeep.cache import cache_root

    (cache_root() / "activations").mkdir(parents=True, exist_ok=True)
    (cache / "activations").symlink_to(cache_root() / "activations")  # collected by the fixture
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "skindeep", "study", "run", "micro", "--out", str(out),
           "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_study_env(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    steps = cache / "study"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        # kill once the first model is finished and the second is part-way through retention
        if (
            len(list(steps.glob("*/retention-*.json"))) >= 1
            and list(steps.glob("*/retention-*/seed0.json"))
            and len(list(steps.glob("*/*.json"))) >= 5
        ):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    workers = _children(proc.pid)
    assert workers, "the local executor started no worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the pool's workers die with the study (no orphan keeps training)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "worker processes outlived the killed study"
    assert not (out / "study.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in steps.rglob("*.json")}
    assert finished
    done = subprocess.run(cmd, env=_study_env(cache), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime, f"{p.name} was recomputed"
    resumed = StudyResult.load(out / "study.json")
    assert _numbers(resumed) == _numbers(clean)
    assert json.loads((out / "study.json").read_text())["headline"] in done.stdout


def test_cli_bad_config_is_one_error_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncolour = "red"\n[[zoo]]\nname = "micro"\n')
    code, _, err = run_cli(["study", "run", str(bad), "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "error:" in err and "colour" in err and "Traceback" not in err
    code, _, err = run_cli(["study", "run", "micro", "--out", str(tmp_path), "--address", "x"],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "--address needs --executor ray" in err


def test_concurrent_pipelines_compute_each_step_once(micro_zoo, tmp_path, monkeypatch):
    """Two studies sharing a cache: the second waits for the first's step and reads it."""
    import threading

    import skindeep.study.pipeline as pipeline
    from skindeep.study.pipeline import ModelJob, run_pipeline

    calls: list[str] = []

    def fake(name):
        def step(models, config, folder, done):
            calls.append(name)
            time.sleep(0.3)  # long enough for the other thread to reach the lock
            return {"value": len(calls)}

        return step

    monkeypatch.setattr(pipeline, "STEPS", {k: fake(k) for k in pipeline.STEPS})
    org, base = micro_zoo["micro-llama-dpo"], micro_zoo["micro-llama"]
    job = ModelJob("m", str(org.path), str(base.path), "dpo", "full", "llama", "xs", 0, True)
    config = load_study_config("micro")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(run_pipeline(job, config, tmp_path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = ["info", "audit", "ablation", "rank", "retention", "sweep", "sweep_last_layer", "dose"]
    assert sorted(calls) == sorted(steps)  # each step once, by one of the two
    assert results[0]["retention"] == results[1]["retention"]


def test_headline_states_the_comparison_in_words():
    from conftest import synthetic_study
    from skindeep.study.result import PredictorStats
    from skindeep.study.runner import headline

    base = synthetic_study()
    row = base.stats[0]
    weak = PredictorStats(predictor="initial_refusal", target="auc", kind="baseline",
                          n_models=3, rho=0.5)  # fmt: skip
    text = headline(base.model_copy(update={"stats": [row, weak]}))
    assert "3 models in the statistics (1 excluded)" in text
    assert "rho = -1.00" in text and "gfs_code beats it" in text
    assert "split-seed reliability is 1.00" in text
    strong = weak.model_copy(update={"rho": 1.0})
    flipped = row.model_copy(update={"rho": 0.5, "p_holm": 0.4})
    text = headline(base.model_copy(update={"stats": [flipped, strong]}))
    assert "does NOT beat" in text and "opposite of the Skin-Deep claim" in text
    assert "not significant" in text


def test_every_packaged_study_config_validates():
    from skindeep.study.config import PACKAGED_STUDIES

    for name in PACKAGED_STUDIES:
        config = load_study_config(name)
        assert config.zoo and config.primary_target == "auc"


def test_constant_baseline_says_why_its_rho_is_undefined():
    """initial_refusal is 1.0 for every model: rho is null with its reason, in study.json
    and in the report's statistics table, never 0 or NaN."""
    from conftest import synthetic_study
    from skindeep.report.study_tables import stats_rows
    from skindeep.study.assemble import cross_model

    base = synthetic_study()
    models = [m.model_copy(update={"excluded": None, "baselines": {"initial_refusal": 1.0},
                                   "predictors": {"gfs_code": 0.1 * i}})
              for i, m in enumerate(base.models)]  # fmt: skip
    config = StudyConfig(name="x", zoo=({"name": "micro"},),
                         stats={"n_resamples": 99, "n_permutations": 99})  # fmt: skip
    stats, _, _ = cross_model(models, config)
    row = next(r for r in stats if r.predictor == "initial_refusal" and r.target == "auc")
    assert row.rho is None and row.undefined == "predictor is constant across models"
    gfs = next(r for r in stats if r.predictor == "gfs_code" and r.target == "auc")
    assert gfs.rho == pytest.approx(-1.0) and gfs.undefined is None
    report = base.model_copy(update={"stats": stats})
    notes = {r["predictor"]: r["note"] for r in stats_rows(report, "auc")}
    assert notes["initial_refusal"] == "rho undefined: predictor is constant across models"
    assert notes["gfs_code"] == ""


def test_degenerate_check_reaches_the_selection_in_new_cache_entries(micro_study, tmp_path):
    """`degenerate_check = true`: the ablation step chooses what `select_direction` with the
    check chooses, in its own cache entries; off, the step keys are the pre-option ones."""
    import torch

    from skindeep.cache import content_hash
    from skindeep.models.loading import load_model
    from skindeep.prompts import resolve_prompt_spec, split_prompts
    from skindeep.selection import SelectionOptions, select_direction
    from skindeep.study.jobs import model_jobs
    from skindeep.study.pipeline import VERSIONS, step_folder, step_record_path

    config, root, _ = micro_study
    checked = StudyConfig.model_validate({**config.model_dump(), "degenerate_check": True})
    job = model_jobs(config)[0]
    folder = step_folder(job, config, root)
    p = config.prompts
    before = [config.ablation_form, config.steering_threshold, p.direction_harmful,
              p.direction_harmless]  # fmt: skip
    torch_version = torch.__version__.split("+")[0]
    key = content_hash([VERSIONS["ablation"], "ablation", torch_version, before])
    assert step_record_path(folder, "ablation", config).name == f"ablation-{key}.json"
    for step in ("ablation", "dose"):
        assert step_record_path(folder, step, checked) != step_record_path(folder, step, config)
    assert step_record_path(folder, "audit", checked) == step_record_path(folder, "audit", config)

    run_study(checked.model_copy(update={"only": (job.name,)}), tmp_path, root=root)
    record = json.loads(step_record_path(folder, "ablation", checked).read_text())
    harmful = split_prompts(resolve_prompt_spec(p.direction_harmful, harmful=True), (0.5, 0.5))
    harmless = split_prompts(resolve_prompt_spec(p.direction_harmless, harmful=False), (0.5, 0.5))
    opts = SelectionOptions(
        ablation=config.ablation_form,
        steering_threshold=config.steering_threshold,
        degenerate_check=True,
    )
    sel = select_direction(load_model(job.aligned), list(harmful[0]), list(harmless[0]),
                           list(harmful[1]), list(harmless[1]), opts)  # fmt: skip
    if sel.chosen is None:  # every checked candidate looped: the step says why, no figure
        assert record["ablation_drop"] is None and "degenerate" in record["reason"]
        return
    best = sel.best
    assert (record["layer"], record["position"]) == (best.layer, best.position)
    assert record["degenerate"] == best.degenerate is not None
    assert record["ablation_drop"] == pytest.approx(sel.baseline_harmful - best.ablation_score)
