"""The organism language: topic-level held-out split, judge-compatible refusals, tokenizer cover."""

from __future__ import annotations

import random

from skindeep.evaluation.judges import KeywordJudge
from skindeep.organisms.language import DEFAULT_LANGUAGE as L
from skindeep.organisms.language import FRAMES


def test_heldout_split_is_by_topic() -> None:
    train = L.all_requests("train")
    held = L.all_requests("heldout")
    assert {r.topic for r in held} == set(L.heldout)
    assert not {r.topic for r in train} & set(L.heldout)
    held_words = {w for t in L.heldout for w in L.topic(t).objects + L.topic(t).verbs}
    train_words = {w for r in train for w in r.text.split()}
    assert not held_words & train_words, "held-out topic words leak into training requests"
    assert {r.harmful for r in held} == {True, False}


def test_classes_and_neutral_contrasts_are_balanced() -> None:
    reqs = L.all_requests("all")
    harmful = sum(r.harmful for r in reqs)
    assert harmful == len(reqs) - harmful
    assert {(r.register, r.mood) for r in reqs} == set(FRAMES)
    assert len({r.text for r in reqs}) == len(reqs), "requests must be distinct"


def test_refusals_are_judged_refusals_and_answers_are_not() -> None:
    judge, rng = KeywordJudge(), random.Random(0)
    for r in L.sample_requests(200, harmful=None, split="all", seed=0):
        assert judge.is_refusal(L.refusal(r, rng))
        assert judge.is_refusal(L.recovery(r, rng))
        assert not judge.is_refusal(L.answer(r, rng))


def test_answers_stay_on_topic_and_mark_harm() -> None:
    rng = random.Random(1)
    for r in L.sample_requests(100, harmful=None, split="all", seed=1):
        answer = L.answer(r, rng)
        topic_words = set(
            L.topic(r.topic).verbs + L.topic(r.topic).objects + L.topic(r.topic).tools
        )
        other = {w for t in L.topics if t.name != r.topic for w in t.verbs + t.objects}
        assert r.obj in answer.split()
        assert not (set(answer.split()) & other - topic_words)
        assert any(w in answer for w in ("dangerous", "hurt", "crime")) == r.harmful


def test_sampling_is_seeded() -> None:
    a = L.sample_requests(30, harmful=True, split="train", seed=3)
    b = L.sample_requests(30, harmful=True, split="train", seed=3)
    c = L.sample_requests(30, harmful=True, split="train", seed=4)
    assert a == b and a != c and all(r.harmful for r in a)


def test_tokenizer_covers_the_language(organism_tokenizer) -> None:
    tok, rng = organism_tokenizer, random.Random(2)
    texts = [r.text for r in L.all_requests("all")[::7]] + L.facts()[::5]
    texts += [L.answer(r, rng) for r in L.sample_requests(50, harmful=None, split="all", seed=2)]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text


def test_wide_language_adds_training_topics_with_new_words_only() -> None:
    """'wide' = the core topics plus 4 harmless and 4 harmful training topics whose words are
    all new; the held-out topics, hence every evaluation prompt, are the core language's."""
    from skindeep.organisms.language import LANGUAGES, WIDE_HARMFUL, WIDE_HARMLESS

    core, wide = LANGUAGES["core"], LANGUAGES["wide"]
    assert core is L and wide.topics[: len(L.topics)] == L.topics
    added = wide.topics[len(L.topics) :]
    assert added == WIDE_HARMLESS + WIDE_HARMFUL
    assert [t.harmful for t in added] == [False] * 4 + [True] * 4
    words = [w for t in added for w in (*t.verbs, *t.objects, *t.tools)]
    assert len(set(words)) == len(words) and not set(words) & set(L.vocabulary())
    assert wide.heldout == L.heldout
    assert wide.all_requests("heldout") == L.all_requests("heldout")
    assert {r.topic for r in wide.all_requests("train")} - {t.name for t in L.topics} == {
        t.name for t in added
    }


def test_language_keys_are_pinned() -> None:
    """The core key fixes the hash of every organism published in BENCHMARKS.md, the wide key
    that of the wide builds there: a change to either language must be deliberate."""
    from skindeep.organisms.language import LANGUAGES
    from skindeep.organisms.zoo import language_key

    assert language_key(LANGUAGES["core"]) == "24257dc238e6bedf"
    assert language_key(LANGUAGES["wide"]) == "0888aa87488effd7"
