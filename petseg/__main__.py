"""``python -m petseg ...``: the ``petseg`` command where the console script is not installed."""

from petseg.cli import main

raise SystemExit(main())
