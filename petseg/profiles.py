"""The profiles every config knows (one definition; imported without torch so the CLI starts fast).

- ``quick``: CPU laptops and CI. Sized by work, not by the dataset: a fixed number of optimiser steps and
  capped, breed-stratified validation and test subsets, so it takes about the same minutes on the 600-image
  sample, the 7,020-image 37-breed copy or the 7,390-image download.
- ``standard``: the reference run on CPUs: every training image, the whole test split, 128 px, each model
  about an hour at most on 2 cores (``petseg record KEY --profile standard``).
- ``full``: the study's setting on a GPU: the official download at 512 px.
"""

PROFILES = ("quick", "standard", "full")
