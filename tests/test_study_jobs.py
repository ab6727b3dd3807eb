"""Which study models replicate one setting: the label the setting-level statistics group by."""

from __future__ import annotations

from collections import Counter

from skindeep.organisms.spec import load_zoo_spec
from skindeep.study.jobs import setting_of


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
