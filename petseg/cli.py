"""The ``petseg`` command: ``petseg data check|download|prepare``, ``train``, ``evaluate``, ``demo``, ``book``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from petseg import config as settings
from petseg.config import parse_overrides as parse_overrides  # re-exported: SECTION.KEY=VALUE -> nested dict
from petseg.errors import DEBUG_ENV, ConfigError, UserError, one_line
from petseg.profiles import PROFILES

# Every command checks what it was given (paths, settings, devices) before torch and the data pipeline are
# imported or anything is written: a mistake is one line (UserError, printed by main) within a second.


def _data_check(args: argparse.Namespace) -> int:
    from petseg.data.layout import data_root_from_env, find_dataset_root
    from petseg.data.split import make_split
    from petseg.data.validate import check_dataset

    root = data_root_from_env(args.root)
    if root is None:
        raise SystemExit("petseg data check: give ROOT or set PETSEG_DATA")
    start = time.perf_counter()
    root = find_dataset_root(root)
    _check_seed(args.seed)
    report = check_dataset(root, progress=not args.json)
    config = settings.data_settings(PROFILES[0])
    seed = config["seed"] if args.seed is None else args.seed
    split = make_split(report.usable, val_fraction=config["val_fraction"], seed=seed,
                       test_fraction=config["test_fraction"], duplicates=report.duplicates)
    summary = report.summary()
    summary["split"] = {**split.sizes(), "unsplit": len(split.unsplit), "seed": seed,
                        "val_fraction": split.val_fraction, "test_source": split.test_source,
                        "dropped_duplicates": len(split.dropped_duplicates)}
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
        _print_duplicates(summary["duplicates"])
    if not report.usable:
        print(f"petseg: no usable image/mask pairs under {summary['root']}", file=sys.stderr)
        return 1
    return 0


def _print_duplicates(groups: list[dict]) -> None:
    """One line per group of duplicate photographs, with each member's official list."""
    if not groups:
        return
    crossing = sum(group["crosses_trainval_test"] for group in groups)
    print(f"  duplicates {len(groups)} groups of the same photograph ({sum(len(g['stems']) for g in groups)} "
          f"images; {crossing} in both trainval and test: their trainval copies are left out of training)")
    for group in groups:
        members = ", ".join(f"{stem} ({where})" for stem, where in group["lists"].items())
        print(f"  duplicate {members}{'  <- crosses trainval/test' if group['crosses_trainval_test'] else ''}")


def _data_download(args: argparse.Namespace) -> int:
    from petseg.data.download import download_dataset
    from petseg.data.pipeline import default_download_dir

    target = Path(args.target) if args.target else default_download_dir()
    print(download_dataset(target))
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from petseg.data.locate import check_data_available

    settings.check_data_settings({key: value for key, value in (("image_size", args.image_size),
                                                                ("seed", args.seed)) if value is not None})
    check_data_available(args.data)
    from petseg.data.pipeline import prepare_data

    prepared = prepare_data(args.data, args.profile, image_size=args.image_size, seed=args.seed)
    print(json.dumps({"root": str(prepared.root), "cache": str(prepared.cache.path),
                      "split_file": str(prepared.split_path), "split": prepared.split.sizes(),
                      "image_size": prepared.cache.size}, indent=1))
    return 0


def _check_seed(seed: int | None) -> None:
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")


def _check_run_settings(args: argparse.Namespace, experiments: list[tuple[str, dict]]) -> str | None:
    """Everything ``train`` and ``record`` are given, before anything is written: the seed, where the data is
    (quick: before torch is imported, so a missing dataset or an offline machine fails within a second),
    the device, and every experiment's settings (``experiments``: (name, overrides) pairs). Returns the
    dataset folder as an absolute path (runs record it), or None when the data is to be downloaded."""
    from petseg.data.locate import check_data_available

    _check_seed(args.seed)
    root = check_data_available(args.data)
    settings.check_device(args.device)
    for name, overrides in experiments:
        config = settings.load_experiment_config(name, args.profile, overrides)
        settings.check_device(config["train"].get("device"), "train.device")
    return os.path.abspath(root) if root else None


class _ExperimentChoices(list):
    """The experiments ``train`` offers (its help and argparse's error list them); a renamed experiment's old name
    is let through as well, so that :func:`petseg.config.check_experiment_name` says what it is called now."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in settings.RENAMED_EXPERIMENTS


def _train(args: argparse.Namespace) -> int:
    settings.check_experiment_name(args.model)  # an old name: one line naming the new one
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides = settings.merge(overrides, {"train": {"epochs": args.epochs}})
    args.data = _check_run_settings(args, [(args.model, overrides)])
    overrides = overrides or None
    from petseg.experiment import run_experiment

    run = run_experiment(args.model, args.profile, args.data, args.seed, overrides=overrides, tag=args.tag,
                         runs_dir=args.runs_dir, force=args.force, device=args.device,
                         resume="required" if args.resume else "auto")
    test = run.results["test"]
    state = "reused finished run" if run.reused else f"trained in {run.results['train_seconds']} s"
    print(f"{run.path} ({state})")
    if "one_click" in test:  # a prompted (SAM 2) run: 1 click, box, NoC
        from petseg.evaluation.clicks import prompted_table

        print(json.dumps(prompted_table({"test": test}).loc["test"].to_dict()))
        return 0
    print(json.dumps({k: test.get(k) for k in ("miou", "mdice", "pixel_accuracy", "ssim", "psnr") if k in test}))
    return 0


def _ablation_label(text: str) -> str:
    from petseg.reporting.recorded import check_label

    try:
        return check_label(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _record(args: argparse.Namespace) -> int:
    import logging

    from petseg.catalog import CATALOG

    overrides = parse_overrides(args.set)
    args.data = _check_run_settings(args, [(CATALOG[key].experiment, settings.merge(CATALOG[key].overrides, overrides))
                               for key in args.models])
    from petseg.paths import recorded_runs_dir
    from petseg.reporting.recorded import record_reference_runs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    budget = args.budget_minutes * 60 if args.budget_minutes else None
    written = record_reference_runs(args.models, args.profile, args.data, args.seed, args.out or recorded_runs_dir(),
                                    overrides=overrides, budget_seconds=budget,
                                    label=args.label, runs_dir=args.runs_dir, device=args.device)
    print(json.dumps({key: str(path) if path else None for key, path in written.items()}, indent=1))
    return 0 if all(written.values()) else 3


def _evaluate(args: argparse.Namespace) -> int:
    from petseg.data.locate import find_data
    from petseg.models.weights import check_checkpoint_path

    check_checkpoint_path(args.checkpoint)
    data = os.path.abspath(find_data(args.data)) if args.data else None  # the results record where it was
    settings.check_device(args.device)
    from petseg.experiment import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, args.split, data=data, device=args.device)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        from petseg.reporting.runs import metrics_table

        rows = {"model": results["metrics"], **results.get("baselines", {})}
        print(metrics_table(rows).to_string() if "miou" in results["metrics"] else results["metrics"])
    print(f"written to {results['written_to']}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    settings.check_device(args.device)
    from petseg.demo.app import main as demo_main

    return demo_main(sam2=args.sam2, runs_dir=args.runs, host=args.host, port=args.port, device=args.device,
                     random_image_size=args.random_image_size, profile=args.profile)


def _book(args: argparse.Namespace) -> int:
    from petseg import book
    from petseg.data.locate import check_data_available

    # Find (or download) the data before any kernel starts, so a missing dataset fails in a second, in one line.
    root = check_data_available(args.data)
    if root is None:
        from petseg.data.pipeline import resolve_data_root

        root = resolve_data_root(args.data)
    args.data = str(root)
    return book.run_from_args(args)


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
    prepare.add_argument("--profile", default="quick", choices=list(PROFILES))
    prepare.add_argument("--image-size", type=int)
    prepare.add_argument("--seed", type=int)
    prepare.set_defaults(func=_data_prepare)

    train = commands.add_parser("train", help="train (or resume) a model; reuses a finished identical run")
    train.add_argument("model", choices=_ExperimentChoices(settings.available_experiments()))
    train.add_argument("--profile", default="quick", choices=list(PROFILES))
    train.add_argument("--data", help="dataset folder (default: $PETSEG_DATA, else download)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    train.add_argument("--tag", help="suffix for the run name (e.g. a variant)")
    train.add_argument("--runs-dir", type=Path, help="where runs go (default: $PETSEG_RUNS, else runs/ at the checkout's root)")
    train.add_argument("--device", help="cuda, mps, cpu (default: best available)")
    train.add_argument("--force", action="store_true", help="train again from scratch even if a run exists")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run (last.pt) of this config; an error if there is none "
                            "(without the flag an interrupted run is continued too, a missing one started)")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override one config value (YAML), e.g. train.num_workers=12; repeatable")
    train.set_defaults(func=_train)

    from petseg.catalog import CATALOG

    record = commands.add_parser("record", help="train + test catalog models and record their results for the "
                                                "book (book/reference_run/<profile>/), e.g. the full profile on a GPU")
    record.add_argument("models", nargs="+", choices=list(CATALOG), metavar="MODEL",
                        help=f"catalog keys, in order: {', '.join(CATALOG)}")
    record.add_argument("--profile", default="full", choices=list(PROFILES))
    record.add_argument("--data", help="dataset folder (default: $PETSEG_DATA, else download)")
    record.add_argument("--seed", type=int, default=0)
    record.add_argument("--out", type=Path, help="record folder (default: the repository's book/reference_run)")
    record.add_argument("--runs-dir", type=Path, help="where runs go (default: $PETSEG_RUNS, else runs/ at the checkout's root)")
    record.add_argument("--device", help="cuda, mps, cpu (default: best available)")
    record.add_argument("--budget-minutes", type=float,
                        help="start no further model after this many minutes (exit status 3 if any was skipped)")
    record.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one config value of every model (YAML), e.g. train.num_workers=12")
    record.add_argument("--label", type=_ablation_label, help="record an ablation named LABEL (book/reference_run/ablations/"
                                        "<model>-<label>-s<seed>.json), e.g. --label epochs48 --set train.epochs=48")
    record.set_defaults(func=_record)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on a split, with baselines")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    evaluate.add_argument("--device")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(func=_evaluate)

    demo = commands.add_parser("demo", help="serve the interactive app (SAM 2 clicks/boxes + full-image models)")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--sam2", help="SAM 2: a petseg run directory, its best.pt, or an official SAM 2.1 checkpoint "
                                     "(default: the newest finished SAM 2 run, else random weights, labelled)")
    demo.add_argument("--runs", type=Path, help="where to look for finished runs (default: $PETSEG_RUNS, else runs/ at the checkout's root)")
    demo.add_argument("--profile", choices=list(PROFILES), help="offer only this profile's runs (default: all)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    demo.add_argument("--random-image-size", type=int, default=1024,
                      help="input size of the random-weight SAM 2 used when no trained one exists")
    demo.set_defaults(func=_demo)

    from petseg import book

    book_parser = commands.add_parser("book", help="execute the chapters with papermill and build the HTML book")
    book.add_arguments(book_parser)
    book_parser.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user's mistake (:class:`petseg.errors.UserError`) or a failed download is one
    line on stderr and exit status 1 (``PETSEG_DEBUG=1``: with its traceback). Other errors are bugs: they
    keep their traceback."""
    from petseg.data.download import DownloadError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, DownloadError) as error:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"petseg: {one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
