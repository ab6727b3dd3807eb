"""Which study models replicate one setting: the label the setting-level statistics group by."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from skindeep.organisms.spec import load_zoo_spec
from skindeep.study.config import ZooRef
from skindeep.study.jobs import setting_of, zoo_design


def test_training_seed_replicates_share_a_setting_and_nothing_else_does() -> None:
    spec = load_zoo_spec("study")
    labels = {a.name: setting_of(spec.name, a) for a in spec.aligned}
    # the study zoo's organisms come in pairs NAME-t0 / NAME-t1 that differ only in their seed
    for name, label in labels.items():
        stem = name.rsplit("-t", 1)[0]
        twins = [n for n in labels if n.rsplit("-t", 1)[0] == stem]
        assert {labels[t] for t in twins} == {label}
    counts = Counter(labels.values())
    assert set(counts.values()) == {2} and len(counts) == len(spec.aligned) // 2
    # another build seed of the zoo is the same design; another zoo is not
    again = load_zoo_spec("study", seed=1)
    assert {setting_of(again.name, a) for a in again.aligned} == set(labels.values())
    default = load_zoo_spec("default")
    assert not {setting_of(default.name, a) for a in default.aligned} & set(labels.values())


def test_another_language_is_another_design_and_names_its_organisms() -> None:
    """The wide-language build of a zoo is not a replicate of the core one: its settings and
    its organisms' names (NAME@wide, NAME@wide-3) differ; the core ones keep their labels."""
    core, wide = load_zoo_spec("default"), load_zoo_spec("default", language="wide")
    assert (zoo_design(core), zoo_design(wide)) == ("default", "default+wide")
    core_set = {setting_of(zoo_design(core), a) for a in core.aligned}
    assert core_set == {setting_of(core.name, a) for a in core.aligned}
    assert not core_set & {setting_of(zoo_design(wide), a) for a in wide.aligned}
    tags = [
        ZooRef(name="default", seed=s, language=lang).tag
        for s, lang in ((0, None), (3, None), (0, "core"), (3, "core"), (0, "wide"), (3, "wide"))
    ]
    assert tags == ["", "@3", "", "@3", "@wide", "@wide-3"]
    with pytest.raises(ValidationError, match="unknown organism language 'klingon'"):
        ZooRef(name="default", language="klingon")
