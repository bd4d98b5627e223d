"""Where the dataset is, found without torch or albumentations: what the command line checks first.

:func:`check_data_available` returns the dataset root (``--data``, ``$PETSEG_DATA`` or a finished download)
or, when there is none, checks that the download can start. A missing folder, a file given for a folder, or
an offline machine is then one line within a second, before the heavy modules load and before anything is
written. :func:`petseg.data.pipeline.resolve_data_root` does the same and downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

from petseg.data import download as dl
from petseg.data.layout import data_root_from_env, find_dataset_root

CACHE_ENV = "PETSEG_CACHE"
DOWNLOAD_FOLDER = "oxford-iiit-pet"


def default_cache_dir() -> Path:
    """``$PETSEG_CACHE``, else ``~/.cache/petseg`` (as :func:`petseg.data.cache.default_cache_dir`)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "petseg").expanduser()


def default_download_dir() -> Path:
    """Where ``petseg data download`` puts the dataset (as :func:`petseg.data.pipeline.default_download_dir`)."""
    return default_cache_dir() / DOWNLOAD_FOLDER


def find_data(data: str | os.PathLike | None = None) -> Path | None:
    """The dataset root: ``data``, else ``$PETSEG_DATA``, else a finished download; None if there is none.

    A given path that is missing or holds no dataset raises :class:`petseg.data.layout.DatasetNotFoundError`.
    """
    explicit = data_root_from_env(data)
    if explicit is not None:
        return find_dataset_root(explicit)
    target = default_download_dir()
    return find_dataset_root(target) if dl.is_complete_download(target) else None


def check_data_available(data: str | os.PathLike | None = None) -> Path | None:
    """:func:`find_data`; when it finds nothing and the archives are not downloaded yet, check that the
    download server answers (:func:`petseg.data.fetch.check_reachable`: an OfflineError at once when not)
    and return None: the data will be downloaded."""
    root = find_data(data)
    if root is None:
        downloads = default_download_dir().parent / "downloads"
        if not all((downloads / name).is_file() for name in dl.OFFICIAL_ARCHIVES):
            dl.check_reachable(dl.OFFICIAL_BASE_URL)
    return root
