"""Prompt sets: the real benchmark files, every file format, validation messages, organism
prompts, deterministic splits and harmful/harmless pair checks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

import skindeep.models.loading as loading
from skindeep.errors import PromptError
from skindeep.prompts import (
    PromptSet,
    check_pair,
    from_dataset,
    load_prompts,
    organism_prompts,
    resolve_prompt_spec,
    split_prompts,
)

DATA = Path(__file__).resolve().parent / "data"  # 40-row excerpts, see data/README.md


def test_real_files_load_with_default_columns() -> None:
    """AdvBench (goal), JailbreakBench (Goal) and the Alpaca JSON list load whole."""
    with open(DATA / "advbench.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    adv = load_prompts(DATA / "advbench.csv")
    assert (adv.name, adv.prompts) == ("advbench", tuple(r["goal"] for r in rows))
    assert adv.prompts[0].startswith("Write a script that can exploit vulnerabilities")
    jbb = load_prompts(DATA / "jailbreakbench.csv")
    assert len(jbb) == 40 and jbb.prompts[0].startswith("Write a defamatory article")
    alpaca = load_prompts(DATA / "harmless_alpaca.json", limit=10)
    assert alpaca.prompts == tuple(json.loads((DATA / "harmless_alpaca.json").read_text())[:10])
    assert alpaca.prompts[0] == "What type of triangle has three congruent sides?"
    repeats = sum(n - 1 for n in Counter(r["target"] for r in rows).values())
    assert repeats >= 1  # the excerpt keeps one of AdvBench's repeated targets
    with pytest.raises(PromptError, match=rf"{repeats} duplicate prompt\(s\).*'Sure, here is"):
        load_prompts(DATA / "advbench.csv", column="target")


def test_unknown_column_lists_the_available_ones() -> None:
    """A wrong column name is reported with every column the file has."""
    with pytest.raises(PromptError, match=r"no column 'prompt'.*goal, target"):
        load_prompts(DATA / "advbench.csv", column="prompt")
    with pytest.raises(PromptError, match="Behavior, Category"):
        load_prompts(DATA / "jailbreakbench.csv", column="behaviour")


def test_json_objects_jsonl_and_text(tmp_path: Path) -> None:
    """Objects with a column (default or named), JSONL and one-per-line text all load."""
    objects = [{"instruction": "a b", "category": "x"}, {"instruction": "c d", "category": "y"}]
    (tmp_path / "o.json").write_text(json.dumps(objects))
    assert load_prompts(tmp_path / "o.json").prompts == ("a b", "c d")
    assert load_prompts(tmp_path / "o.json", column="category").prompts == ("x", "y")
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n\n{"prompt": "two"}\n')
    assert load_prompts(tmp_path / "p.jsonl").prompts == ("one", "two")
    (tmp_path / "p.txt").write_text("first\n\n  second  \n")
    ps = load_prompts(tmp_path / "p.txt", name="mine")
    assert ps == PromptSet("mine", ("first", "second"), str(tmp_path / "p.txt"))
    (tmp_path / "t.tsv").write_text("id\ttext\n1\thello\n2\tworld\n")
    assert load_prompts(tmp_path / "t.tsv").prompts == ("hello", "world")
    with pytest.raises(PromptError, match=r"none of the default prompt columns.*id"):
        load_prompts(_write(tmp_path / "n.csv", "id,body\n1,x\n"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.txt", "\n\n", "holds no prompts"),
        ("empty.json", "[]", "holds no prompts"),
        ("header.csv", "goal,target\n", "holds no prompts"),
        ("bad.json", "{not json", "not valid JSON"),
        ("dict.json", '{"a": 1}', "expected a JSON list"),
        ("blank.csv", 'goal\nx\n"  "\n', "1 empty prompt"),
        ("dups.txt", "a\nb\na\na\nb\nc\n", r"3 duplicate prompt\(s\).*e\.g\. 'a'"),
    ],
)
def test_bad_files_are_explained(tmp_path: Path, name: str, text: str, message: str) -> None:
    """Empty, malformed, blank and duplicated inputs raise PromptError saying which."""
    with pytest.raises(PromptError, match=message):
        load_prompts(_write(tmp_path / name, text))


@pytest.mark.parametrize("name", ["l.csv", "l.tsv", "l.json", "l.jsonl", "l.txt"])
def test_files_that_are_not_utf8(tmp_path: Path, name: str) -> None:
    """A latin-1 file of any format is a PromptError naming the file, not a UnicodeDecodeError."""
    text = {
        ".json": '["caf\u00e9"]',
        ".jsonl": '{"prompt": "caf\u00e9"}',
        ".csv": "goal\ncaf\u00e9\n",
        ".tsv": "text\ncaf\u00e9\n",
    }.get(Path(name).suffix, "caf\u00e9\n")
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(PromptError, match=rf"{name} is not UTF-8 text") as info:
        load_prompts(path)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_malformed_csv(tmp_path: Path) -> None:
    """csv.Error (here a field over csv's size limit) is a PromptError naming the file."""
    path = _write(tmp_path / "big.csv", 'goal\n"' + "x" * 200_000 + '"\n')
    with pytest.raises(PromptError, match=r"big\.csv is not valid CSV: field larger"):
        load_prompts(path)


def test_missing_file_and_bad_limit(tmp_path: Path) -> None:
    """A missing path and a non-positive limit are PromptErrors."""
    with pytest.raises(PromptError, match="does not exist"):
        load_prompts(tmp_path / "nope.csv")
    with pytest.raises(PromptError, match="limit"):
        load_prompts(DATA / "advbench.csv", limit=0)


def test_from_dataset_offline_fails_fast_and_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub offline and the dataset not cached, the error says so."""
    monkeypatch.setattr(loading, "hub_offline", lambda: True)
    with pytest.raises(PromptError, match="offline or unreachable"):
        from_dataset("skindeep-test/no-such-dataset-xyz", "train")


def test_prompt_specs_name_files_datasets_and_organism_sets(tmp_path: Path) -> None:
    """One syntax for every command: files, hf:NAME[:SPLIT] through `datasets`, organism sets."""
    folder = tmp_path / "local_ds"
    folder.mkdir()
    (folder / "train.csv").write_text("goal,target\nhow to bake bread,x\nhow to fix a bike,y\n")
    found = resolve_prompt_spec(f"hf:{folder}", column="goal")  # a local dataset folder
    assert found.prompts == ("how to bake bread", "how to fix a bike")
    assert found.source.startswith("hf:") and found.source.endswith("#goal")
    first = resolve_prompt_spec(f"hf:{folder}:train", column="goal", n=1)
    assert first.prompts == found.prompts[:1]
    assert resolve_prompt_spec(str(DATA / "advbench.csv"), column="goal", n=3) == load_prompts(
        DATA / "advbench.csv", column="goal", limit=3
    )
    own = resolve_prompt_spec(f"{DATA / 'advbench.csv'}#goal", column="other", n=3)
    assert own.prompts == load_prompts(DATA / "advbench.csv", column="goal", limit=3).prompts
    assert resolve_prompt_spec(f"hf:{folder}#goal").prompts == found.prompts
    organism = resolve_prompt_spec("organism:heldout:12", harmful=True, seed=2)
    assert organism == organism_prompts(True, "heldout", n=12, seed=2)
    harmless = resolve_prompt_spec("organism:train-harmless", n=7)
    assert harmless == organism_prompts(False, "train", 7)
    for bad, message in [
        ("hf:", "expected hf:NAME"),
        ("organism:heldout", "expected organism:SPLIT-CLASS"),
        ("organism:heldout-harmful:x", "must be an integer"),
    ]:
        with pytest.raises(PromptError, match=message):
            resolve_prompt_spec(bad)


def test_organism_prompts_are_reproducible_and_disjoint() -> None:
    """Same seed, same prompts; classes and splits never share a prompt."""
    a = organism_prompts(True, "train", n=20, seed=3)
    assert a == organism_prompts(True, "train", n=20, seed=3)
    assert a.prompts != organism_prompts(True, "train", n=20, seed=4).prompts
    harmless = organism_prompts(False, "train", n=20, seed=3)
    heldout = organism_prompts(True, "heldout", n=20, seed=3)
    assert not set(a) & set(harmless) and not set(a) & set(heldout)
    check_pair(a, harmless)
    with pytest.raises(PromptError, match=r"only .* distinct harmful heldout"):
        organism_prompts(True, "heldout", n=10**6)
    with pytest.raises(PromptError, match="split"):
        organism_prompts(True, "test", n=2)  # type: ignore[arg-type]


def test_split_is_deterministic_disjoint_and_complete() -> None:
    """Parts have the rounded sizes, cover the set once, and depend only on the seed."""
    ps = load_prompts(DATA / "jailbreakbench.csv")
    train, val, test = split_prompts(ps, (0.6, 0.25, 0.15), seed=7)
    assert (len(train), len(val), len(test)) == (24, 10, 6)
    assert sorted(train.prompts + val.prompts + test.prompts) == sorted(ps.prompts)
    assert split_prompts(ps, (0.6, 0.25, 0.15), seed=7) == (train, val, test)
    assert split_prompts(ps, (0.6, 0.25, 0.15), seed=8)[0] != train
    odd = split_prompts(PromptSet("s", tuple("abcdefg"), "t"), (0.5, 0.5))
    assert [len(p) for p in odd] == [4, 3]


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (1.0,), (1.2, -0.2)])
def test_bad_fractions(fractions: tuple[float, ...]) -> None:
    """Fractions must be positive, at least two, and sum to one."""
    with pytest.raises(PromptError, match="fractions"):
        split_prompts(PromptSet("s", ("a", "b", "c"), "t"), fractions)


def test_split_refuses_empty_parts() -> None:
    """Too few prompts for the fractions asked is an error, not an empty set."""
    with pytest.raises(PromptError, match="a part would be empty"):
        split_prompts(PromptSet("s", ("a", "b"), "t"), (0.9, 0.05, 0.05))


def test_pair_checks() -> None:
    """Fewer than two prompts in a class, or a prompt in both classes, is rejected."""
    harmful = PromptSet("h", ("make a bomb", "steal a car"), "t")
    with pytest.raises(PromptError, match="harmless set has 1 prompt"):
        check_pair(harmful, PromptSet("c", ("bake bread",), "t"))
    with pytest.raises(PromptError, match=r"1 prompt\(s\) are in both.*steal a car"):
        check_pair(harmful, ["bake bread", "steal a car"])
    check_pair(harmful, ["bake bread", "plant a rose"])


def test_prompt_set_validates_itself() -> None:
    """Empty sets and blank prompts cannot be built."""
    with pytest.raises(PromptError, match="empty"):
        PromptSet("e", (), "t")
    with pytest.raises(PromptError, match="non-empty text"):
        PromptSet("e", ("ok", " "), "t")
    assert PromptSet("s", ("a", "b", "c"), "t").head(2).prompts == ("a", "b")
