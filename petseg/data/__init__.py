"""The data's path: raw dataset -> index + validation report -> split -> resize/pad -> cache -> Dataset.

Modules, in the order the data flows through them:

- :mod:`petseg.data.fetch`      HTTP downloads: fail fast offline, resume, verify md5
- :mod:`petseg.data.download`   fetch and extract the official archives into the official layout
- :mod:`petseg.data.layout`     find the dataset root and index its samples (official or course layout)
- :mod:`petseg.data.labels`     trimap / course labels -> {0 background, 1 cat, 2 dog, 255 ignore}
- :mod:`petseg.data.validate`   decode every pair, repair or reject bad files, with reasons
- :mod:`petseg.data.split`      stratified train/val split of trainval, official test split
- :mod:`petseg.data.transforms` resize + pad, augmentation with mask-integrity checks
- :mod:`petseg.data.cache`      preprocessed arrays on disk keyed by data fingerprint and parameters
- :mod:`petseg.data.dataset`    torch Datasets with per-species multipliers
"""
