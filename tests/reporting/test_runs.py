"""petseg.reporting.runs: how a run's numbers were produced, in words."""

from __future__ import annotations


def test_a_runs_description_names_the_capped_subsets_it_was_evaluated_on() -> None:
    from petseg.reporting.runs import evaluated_words

    split = {"train": 2922, "val": 730, "test": 3292}
    assert evaluated_words({"split": split, "evaluated": {"val": 295, "test": 992}}) == (
        " (validated on 295 and tested on 992 of them: breed-stratified subsets)")
    assert evaluated_words({"split": split, "evaluated": {"val": 730, "test": 3292}}) == ""
    assert evaluated_words({"split": split}) == ""  # results written before subsets existed


def test_a_runs_description_names_reduced_precision_only() -> None:
    from petseg.reporting.runs import precision_words

    assert precision_words({"precision": "bf16 autocast"}) == ", training in bf16 autocast"
    assert precision_words({"precision": "fp32"}) == ""
    assert precision_words({}) == ""  # results written before the precision was recorded
