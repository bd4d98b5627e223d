"""petseg.reporting.runs: how a run's numbers were produced, in words."""

from __future__ import annotations


def test_a_runs_description_names_the_capped_subsets_it_was_evaluated_on() -> None:
    from petseg.reporting.runs import evaluated_words

    split = {"train": 2922, "val": 730, "test": 3292}
    assert evaluated_words({"split": split, "evaluated": {"val": 295, "test": 992}}) == (
        " (validated on 295 and tested on 992 of them: breed-stratified subsets)")
    assert evaluated_words({"split": split, "evaluated": {"val": 730, "test": 3292}}) == ""
    assert evaluated_words({"split": split}) == ""  # results written before subsets existed
