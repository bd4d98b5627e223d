"""Evaluation: what a trained model is scored with.

* :mod:`~petseg.evaluation.metrics`: confusion-matrix metrics (IoU, Dice, accuracy; per image; baselines' predictions);
* :mod:`~petseg.evaluation.segmentation`: :func:`evaluate` on a whole dataset and the two baselines;
* :mod:`~petseg.evaluation.reconstruction`: SSIM and PSNR of an autoencoder (the one place they are computed);
* :mod:`~petseg.evaluation.clicks`: the interactive (click) protocol for promptable models;
* :mod:`~petseg.evaluation.calibration`, :mod:`~petseg.evaluation.robustness`,
  :mod:`~petseg.evaluation.failures`, :mod:`~petseg.evaluation.fusion` (what a fusion UNet's global vector
  changes): chapters 4, 7 and 8.

Nothing is imported here, so ``import petseg.evaluation.metrics`` stays cheap.
"""
