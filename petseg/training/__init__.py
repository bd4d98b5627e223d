"""Training: one loop for every petseg model.

* :mod:`~petseg.training.loop`: :func:`~petseg.training.loop.train`, the loop itself;
* :mod:`~petseg.training.tasks`: what differs between segmentation, reconstruction and prompted models;
* :mod:`~petseg.training.config`: :class:`~petseg.training.config.TrainConfig`;
* :mod:`~petseg.training.losses`, :mod:`~petseg.training.schedule`: losses, learning-rate schedule;
* :mod:`~petseg.training.seeds`, :mod:`~petseg.training.distributed`: reproducibility, devices and DDP;
* :mod:`~petseg.training.checkpoints`: run files and checkpoints (writing, resuming, rebuilding a model);
* :mod:`~petseg.training.progress`: what a run says while it runs.

Nothing is imported here, so ``from petseg.training.config import TrainConfig`` loads only what it needs.
"""
