"""Reporting: what the book shows beside a run's numbers.

* :mod:`~petseg.reporting.tables`: runs of every catalog model over seeds, their tables, the appendix page;
* :mod:`~petseg.reporting.runs`: the sentence saying how a run's numbers were produced, metric tables;
* :mod:`~petseg.reporting.study`: the original study's numbers, quoted as reported;
* :mod:`~petseg.reporting.recorded`: recorded results of runs the book cannot repeat on every build;
* :mod:`~petseg.reporting.source`: the library's own source, shown in a chapter (``show_source``);
* :mod:`~petseg.reporting.fusion`: chapter 4's sentences about the fusion models, from this build's numbers;
* :mod:`~petseg.reporting.words`: the sentences of chapters 1, 3 and 5-8 about this build's numbers.

Nothing is imported here, so importing one of them loads only what it needs.
"""
