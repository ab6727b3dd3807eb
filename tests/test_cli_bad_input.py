"""Bad input through the real entry point (`python -m skindeep` in a subprocess), per command.

Each case is one mistake a user makes: a usage error, an unusable --out, a corrupt or foreign
file, a misleading path, an incompatible model pair. Every one must exit 2 with exactly one
`error:` line naming the option, file or value, print no traceback, and leave no file behind
(in --out, the working folder or the cache). Most cases fail before any model is loaded;
the few that need a model use the micro zoo.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interrupts import default_sigint

SRC = Path(__file__).resolve().parents[1] / "src"
LATIN1 = "caf\u00e9 cr\u00e8me"
ALIGNED = "micro-llama-sft-full"


def skindeep(args: list[str], cwd: Path, env: dict[str, str] | None = None, **kwargs):
    """Start `python -m skindeep ARGS` in `cwd` with a private cache and no hub access."""
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "SKINDEEP_CACHE": str(cwd / "cache"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "2000",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "skindeep", *args]
    kwargs.setdefault("preexec_fn", default_sigint)  # Ctrl-C works even under `make test &`
    return subprocess.Popen(
        command, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


def files_under(folder: Path) -> set[str]:
    """Every file and folder below `folder`, relative (what a failed command must not change)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ---- setups: the bad files a case needs, written under the case's folder ----------------------


def _file(tmp: Path, micro: Path | None) -> None:
    (tmp / "file.txt").write_text("not a folder\n")


def _latin1_zoo(tmp: Path, micro: Path | None) -> None:
    (tmp / "zoo.toml").write_bytes(f'name = "{LATIN1}"\n'.encode("latin-1"))


def _unknown_language_zoo(tmp: Path, micro: Path | None) -> None:
    (tmp / "zoo.toml").write_text(
        'language = "klingon"\n[[bases]]\nname = "b"\nfamily = "llama"\nsize = "xs"\n'
    )


def _corrupt_organism(tmp: Path, micro: Path | None) -> None:
    assert micro is not None
    good = tmp / "cache" / "organisms" / "good"
    good.mkdir(parents=True)
    shutil.copy(micro / "organism.json", good / "organism.json")
    broken = tmp / "cache" / "organisms" / "broken"
    broken.mkdir()
    (broken / "organism.json").write_text('{"name": "broken", "spec": {')


def _bad_audit(tmp: Path, micro: Path | None) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    run = tmp / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    tensors = {"layers": np.arange(2), "arditi": rng.normal(size=(2, 8)).astype(np.float32)}
    for layer in range(2):
        tensors[f"subspace.{layer}"] = rng.normal(size=(1, 8)).astype(np.float32)
    save_file(tensors, str(run / "directions.safetensors"))
    # an audit written before empty subspaces existed, with a value that is not a number
    (run / "audit.json").write_text(json.dumps({"subspace": {"singular_values": [["x"], [1]]}}))


def _corrupt_judge(tmp: Path, micro: Path | None) -> None:
    assert micro is not None
    judge = shutil.copytree(micro, tmp / "judge")
    weights = judge / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _bad_template(tmp: Path, micro: Path | None) -> None:
    (tmp / "judge").mkdir()
    (tmp / "template.txt").write_text("Request: {prompt}\nAnswer: {response}\nVerdict {bogus}:")


def _empty_folder(tmp: Path, micro: Path | None) -> None:
    (tmp / "empty").mkdir()


def _other_architecture(tmp: Path, micro: Path | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from skindeep.organisms.architectures import build_config
    from skindeep.organisms.language import DEFAULT_LANGUAGE
    from skindeep.organisms.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(DEFAULT_LANGUAGE)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(build_config("qwen2", "s", tokenizer))
    model.save_pretrained(tmp / "other")
    tokenizer.save_pretrained(tmp / "other")


# ---- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """`args` ({tmp}: the case's folder, {micro}: an aligned micro organism) and what to see."""

    args: tuple[str, ...]
    says: tuple[str, ...]  # fragments of the one error line
    setup: Callable[[Path, Path | None], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    shows: tuple[str, ...] = ()  # fragments elsewhere in the output
    hides: tuple[str, ...] = ()  # fragments that must not be printed
    micro: bool = False


AUDIT = ("audit", "-a", "x", "-b", "y", "--harmful", "organism:heldout")
AUDIT += ("--harmless", "organism:heldout")
REFUSAL = ("refusal", "--model", "x", "--prompts", "organism:heldout-harmful")
ABLATE = ("ablate", "--model", "x", "--directions", "select")
RETENTION = ("retention", "--model", "x")
NO_WRITE = "/proc/skindeep-out"  # not even root may create files in /proc

CASES: dict[str, Case] = {
    # 1. usage errors: click's usage line and the option's name, whatever the entry point
    "missing-option": Case(("audit", "--aligned", "x"), ("--base",)),
    "unknown-option": Case(("audit", "--bogus"), ("--bogus",)),
    "bad-choice": Case((*AUDIT, "--variant", "bogus"), ("--variant", "bogus")),
    "n-prompts-0": Case((*AUDIT, "--n-prompts", "0"), ("--n-prompts",)),
    "k-negative": Case((*AUDIT, "--k", "-1"), ("--k",)),
    "n-perm-0": Case((*AUDIT, "--n-perm", "0"), ("--n-perm",)),
    "batch-size-0": Case((*AUDIT, "--batch-size", "0"), ("--batch-size",)),
    "alpha-nan": Case((*AUDIT, "--alpha", "nan"), ("--alpha", "nan", "finite")),
    "eps-nan": Case((*AUDIT, "--eps", "nan"), ("--eps", "nan", "finite")),
    "workers-0": Case(("organisms", "build", "--workers", "0"), ("--workers",)),
    "build-language": Case(("organisms", "build", "--language", "klingon"), ("--language",)),
    "limit-0": Case((*REFUSAL, "--limit", "0"), ("--limit",)),
    "max-new-tokens-0": Case((*REFUSAL, "--max-new-tokens", "0"), ("--max-new-tokens",)),
    "n-random-0": Case((*ABLATE, "--n-random", "0"), ("--n-random",)),
    "kl-threshold-nan": Case((*ABLATE, "--kl-threshold", "nan"), ("--kl-threshold", "nan")),
    "steering-nan": Case((*ABLATE, "--steering-threshold", "nan"), ("--steering-threshold",)),
    "rank-0": Case((*RETENTION, "--rank", "0"), ("--rank 0", "greater than or equal to 1")),
    "n-0": Case((*RETENTION, "--n", "0,5"), ("--n 0,5",)),
    "steps-and-epochs": Case(
        (*RETENTION, "--steps", "5", "--epochs", "1"), ("--steps or --epochs",)
    ),
    "model-info-no-model": Case(("model", "info"), ("--model",)),
    "study-no-out": Case(("study", "run", "micro"), ("--out",)),
    # 2. --out checked before any work
    "out-is-file": Case((*AUDIT, "--out", "{tmp}/file.txt"), ("--out", "is a file"), _file),
    "out-under-file": Case((*AUDIT, "-o", "{tmp}/file.txt/x"), ("--out", "which is a file"), _file),
    "out-unwritable": Case((*AUDIT, "--out", NO_WRITE), ("--out", "cannot write")),
    "refusal-out": Case((*REFUSAL, "--out", "{tmp}/file.txt"), ("--out", "is a file"), _file),
    "ablate-out": Case((*ABLATE, "--out", "{tmp}/file.txt/x"), ("--out", "a file"), _file),
    "retention-out": Case((*RETENTION, "--out", NO_WRITE), ("--out", "cannot write")),
    "compare-out": Case(
        ("audit-compare", "--out", "{tmp}/file.txt", "{tmp}"), ("--out", "is a file"), _file
    ),
    "build-out": Case(("organisms", "build", "--out", "{tmp}"), ("--out", "is a folder")),
    "study-out": Case(("study", "run", "micro", "-o", "{tmp}/file.txt"), ("--out",), _file),
    "demo-out": Case(("demo", "--out", "{tmp}/file.txt"), ("--out", "is a file"), _file),
    "calibrate-out": Case(("calibrate", "-o", "{tmp}/file.txt/x"), ("--out", "a file"), _file),
    "report-out": Case(("report", "{tmp}", "-o", "{tmp}/file.txt"), ("--out", "a file"), _file),
    "rank-audit-out": Case(
        ("rank-audit", "-a", "x", "-b", "y", "-o", "{tmp}/file.txt"), ("--out", "a file"), _file
    ),
    # 3. corrupt or foreign files
    "zoo-latin1": Case(
        ("organisms", "build", "--zoo", "{tmp}/zoo.toml"), ("zoo.toml", "UTF-8"), _latin1_zoo
    ),
    "zoo-language": Case(
        ("organisms", "build", "--zoo", "{tmp}/zoo.toml"),
        ("zoo.toml",),
        _unknown_language_zoo,
        shows=("unknown organism language 'klingon'; known: core, wide",),
    ),
    "organism-json-corrupt": Case(
        ("organisms", "list"),
        ("broken/organism.json", "corrupt"),
        _corrupt_organism,
        shows=(ALIGNED,),
        micro=True,
    ),
    "cache-is-file": Case(
        ("organisms", "list"),
        ("file.txt", "SKINDEEP_CACHE", "is a file"),
        _file,
        env={"SKINDEEP_CACHE": "{tmp}/file.txt"},
    ),
    "audit-json-values": Case(("audit-compare", "{tmp}/run"), ("audit.json",), _bad_audit),
    "judge-corrupt": Case(
        (
            "refusal",
            "--model",
            "{micro}",
            "--prompts",
            "organism:heldout-harmful:2",
            "--judge",
            "classifier",
            "--judge-model",
            "{tmp}/judge",
            "--max-new-tokens",
            "2",
        ),
        ("--judge-model", "judge"),
        _corrupt_judge,
        hides=("classifier verdicts",),
        micro=True,
    ),
    "judge-template-field": Case(
        (
            *REFUSAL,
            "--judge",
            "classifier",
            "--judge-model",
            "{tmp}/judge",
            "--judge-template",
            "{tmp}/template.txt",
        ),
        ("--judge-template", "{bogus}", "{prompt}"),
        _bad_template,
    ),
    # 4. messages that say what is wrong
    "ablate-no-model": Case(
        ("ablate", "--model", "{tmp}/nothing", "--directions", "select"),
        ("--model", "nothing", "does not exist"),
    ),
    "retention-no-model": Case(
        ("retention", "--model", "{tmp}/nothing"), ("--model", "nothing", "does not exist")
    ),
    "rank-audit-no-model": Case(
        ("rank-audit", "-a", "{tmp}/nothing", "-b", "y"), ("--aligned", "does not exist")
    ),
    "ablate-not-a-model": Case(
        ("ablate", "--model", "{tmp}/empty", "--directions", "select"),
        ("--model", "empty", "not a model folder"),
        _empty_folder,
    ),
    "retention-not-a-model": Case(
        ("retention", "--model", "{tmp}/empty"),
        ("--model", "empty", "not a model folder"),
        _empty_folder,
    ),
    # 5. input that used to be accepted
    "ablate-base-mismatch": Case(
        ("ablate", "--model", "{micro}", "--directions", "pca", "--base", "{tmp}/other"),
        ("not an aligned/base pair", "hidden size"),
        _other_architecture,
        micro=True,
    ),
}


@pytest.fixture(scope="module")
def micro_aligned(request: pytest.FixtureRequest) -> Callable[[], Path]:
    """The aligned micro organism's folder, built on first use."""
    return lambda: request.getfixturevalue("micro_zoo")[ALIGNED].path


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path, micro_aligned) -> None:
    case = CASES[name]
    micro = micro_aligned() if case.micro else None
    if case.setup is not None:
        case.setup(tmp_path, micro)
    before = files_under(tmp_path)

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{micro}", str(micro))

    args = [fill(arg) for arg in case.args]
    env = {key: fill(value) for key, value in case.env.items()}
    process = skindeep(args, tmp_path, env)
    out, err = process.communicate(timeout=600)
    text = out.decode() + err.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1, text
    for fragment in case.says:
        assert fill(fragment) in lines[0], (fragment, lines[0])
    for fragment in case.shows:
        assert fragment in text, (fragment, text)
    for fragment in case.hides:
        assert fragment not in text, (fragment, text)
    assert files_under(tmp_path) == before, "a failed command left files behind"


def test_ctrl_c_exits_130_keeps_finished_results_and_says_how_to_resume(
    tmp_path: Path, micro_zoo
) -> None:
    """SIGINT during retention: exit 130, the refusal-before measurement kept, no temp files."""
    model = micro_zoo[ALIGNED].path
    args = ["retention", "--model", str(model), "--n", "5,10,25", "--seeds", "0,1,2"]
    args += ["--n-eval", "8", "--max-new-tokens", "8", "--out", str(tmp_path / "out")]
    process = skindeep(args, tmp_path)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "cache").glob("retention/*/before.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "retention never measured refusal before"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"no exit 300 s after SIGINT: {process.communicate()[1].decode()[-2000:]}")
    text = out.decode() + err.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text, text
    assert "run the same command again to resume" in text
    assert list((tmp_path / "cache").glob("retention/*/before.json"))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not (tmp_path / "out").exists()
