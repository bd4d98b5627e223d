"""The ``petseg`` command: ``petseg data check|download|prepare``, ``petseg book`` (more as chapters grow)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _data_check(args: argparse.Namespace) -> int:
    from petseg.data.layout import data_root_from_env, find_dataset_root
    from petseg.data.pipeline import load_config
    from petseg.data.split import make_split
    from petseg.data.validate import check_dataset

    root = data_root_from_env(args.root)
    if root is None:
        raise SystemExit("petseg data check: give ROOT or set PETSEG_DATA")
    start = time.perf_counter()
    report = check_dataset(find_dataset_root(root), progress=not args.json)
    config = load_config("data", "quick")
    seed = config["seed"] if args.seed is None else args.seed
    split = make_split(report.usable, val_fraction=config["val_fraction"], seed=seed,
                       test_fraction=config["test_fraction"])
    summary = report.summary()
    summary["split"] = {**split.sizes(), "unsplit": len(split.unsplit), "seed": seed,
                        "val_fraction": split.val_fraction, "test_source": split.test_source}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        totals = summary["totals"]
        print(f"{summary['root']} ({summary['layout']} layout, fingerprint {summary['fingerprint']})")
        print(f"  images found {totals['images_found']}, usable pairs {totals['usable_pairs']}, "
              f"repaired {totals['repaired']}, rejected {totals['rejected']}, stray files {totals['stray_files']}")
        print(f"  species {summary['species']}")
        print(f"  breeds  {summary['breeds']}")
        print(f"  split   {summary['split']}")
        for rejection in summary["rejected"]:
            print(f"  rejected {rejection['path']}: {rejection['reason']}")
        for stem, repairs in summary["repaired"].items():
            print(f"  repaired {stem}: {'; '.join(repairs)}")
        for stray in summary["stray_files"]:
            print(f"  stray    {stray['path']}: {stray['reason']}")
        for note in summary["notes"]:
            print(f"  note     {note}")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from petseg.data.download import download_dataset
    from petseg.data.pipeline import default_download_dir

    target = Path(args.target) if args.target else default_download_dir()
    print(download_dataset(target))
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from petseg.data.pipeline import prepare_data

    prepared = prepare_data(args.data, args.profile, image_size=args.image_size, seed=args.seed)
    print(json.dumps({"root": str(prepared.root), "cache": str(prepared.cache.path),
                      "split_file": str(prepared.split_path), "split": prepared.split.sizes(),
                      "image_size": prepared.cache.size}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="find, download, check and preprocess the dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="decode every file; report usable, repaired and rejected pairs")
    check.add_argument("root", nargs="?", help="dataset folder (default: $PETSEG_DATA)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--seed", type=int, help="split seed (default: configs/data.yaml)")
    check.set_defaults(func=_data_check)
    download = data_commands.add_parser("download", help="download and extract the official dataset")
    download.add_argument("--target", help="folder to extract into (default: ~/.cache/petseg/oxford-iiit-pet)")
    download.set_defaults(func=_data_download)
    prepare = data_commands.add_parser("prepare", help="check, split and build the preprocessed cache")
    prepare.add_argument("--data", help="dataset folder (default: $PETSEG_DATA, else download)")
    prepare.add_argument("--profile", default="quick", choices=["quick", "full"])
    prepare.add_argument("--image-size", type=int)
    prepare.add_argument("--seed", type=int)
    prepare.set_defaults(func=_data_prepare)

    from petseg import book

    book_parser = commands.add_parser("book", help="execute the chapters with papermill and build the HTML book")
    book.add_arguments(book_parser)
    book_parser.set_defaults(func=book.run_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    from petseg.data.download import DownloadError
    from petseg.data.layout import DatasetNotFoundError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DownloadError, DatasetNotFoundError) as error:
        print(f"petseg: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
