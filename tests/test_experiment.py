"""The experiment runner and the train/evaluate CLI, on a tiny synthetic dataset and a tiny UNet."""

import json

import pytest

from petseg.cli import main
from petseg.experiment import deep_merge, evaluate_checkpoint, load_experiment_config, predict, run_experiment
from petseg.reporting.runs import metrics_table, pick_examples

TINY = {"model": {"depth": 3, "base_width": 4, "max_width": 8},
        "train": {"epochs": 1, "batch_size": 4, "max_steps_per_epoch": 2},
        "data": {"image_size": 32}}


@pytest.fixture
def env(official_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("PETSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PETSEG_PROGRESS", "0")
    return official_dataset, tmp_path / "runs"


def test_configs_merge_profiles_and_reject_unknowns():
    quick = load_experiment_config("unet", "quick")
    full = load_experiment_config("unet", "full")
    assert quick["data"]["image_size"] == 128 and full["data"]["image_size"] == 512
    assert quick["model"]["depth"] == 6 and quick["model"]["name"] == "unet"
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(ValueError, match="unknown experiment"):
        load_experiment_config("resnet", "quick")
    with pytest.raises(ValueError, match="experiment 'clip_unet' is now called 'fusion_unet'"):  # issue 15
        load_experiment_config("clip_unet", "quick")
    with pytest.raises(ValueError, match="profile"):
        load_experiment_config("unet", "medium")


def test_run_writes_results_with_baselines_and_is_reused(env):
    data, runs = env
    run = run_experiment("unet", "quick", data, seed=0, overrides=TINY, runs_dir=runs, progress=False)
    assert not run.reused
    for name in ("results.json", "experiment.json", "metrics.jsonl", "best.pt", "last.pt", "per_image_test.csv"):
        assert (run.path / name).exists(), name
    results = run.results
    assert results["data"]["split"] == {"train": 12, "val": 3, "test": 15}
    assert 0 <= results["test"]["miou"] <= 1
    assert set(results["baselines"]) == {"all_background", "majority_per_pixel"}
    assert results["baselines"]["all_background"]["iou"][1] == 0  # no cat pixel is predicted
    assert results["provenance"]["data_fingerprint"] == results["data"]["fingerprint"]
    assert len(run.per_image()) == 15 and len(run.history()) == 1
    again = run_experiment("unet", "quick", data, seed=0, overrides=TINY, runs_dir=runs, progress=False)
    assert again.reused and again.path == run.path and again.results["test"] == results["test"]
    other_seed = run_experiment("unet", "quick", data, seed=1, overrides=TINY, runs_dir=runs, progress=False)
    assert other_seed.path != run.path
    table = metrics_table({"model": results["test"], **results["baselines"]})
    assert list(table.index) == ["model", "all_background", "majority_per_pixel"]
    assert table.loc["all_background", "Dice cat"] == 0
    assert pick_examples(run.per_image(), n=3)[0] == int(run.per_image().miou.idxmax())


def test_evaluate_checkpoint_and_cli(env, capsys):
    data, runs = env
    run = run_experiment("unet", "quick", data, overrides=TINY, runs_dir=runs, progress=False)
    result = evaluate_checkpoint(run.best_checkpoint, "test")
    assert result["metrics"]["miou"] == pytest.approx(run.results["test"]["miou"])
    assert (run.path / "eval-test-best.json").exists()
    assert main(["evaluate", str(run.best_checkpoint), "--split", "val", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "val" and "miou" in printed["metrics"]
    with pytest.raises(FileNotFoundError):
        evaluate_checkpoint(run.path / "missing.pt")


def test_ae_unet_trains_on_top_of_the_autoencoder_run(env):
    data, runs = env
    run = run_experiment("ae_unet", "quick", data, overrides=TINY, tag="frozen", runs_dir=runs, progress=False)
    assert run.config["upstream_run"].startswith("autoencoder-quick-")
    upstream = runs / run.config["upstream_run"]
    assert json.loads((upstream / "results.json").read_text())["test"]["ssim"] is not None
    assert run.results["trainable_parameters"] < run.results["parameters"]  # the encoder is frozen
    longer = run_experiment("ae_unet", "quick", data, tag="frozen", runs_dir=runs, progress=False,
                            overrides={**TINY, "upstream": {"train": {"epochs": 2}}})
    assert longer.config["upstream_run"] != run.config["upstream_run"] and longer.path != run.path
    longer_upstream = json.loads((runs / longer.config["upstream_run"] / "results.json").read_text())
    assert longer_upstream["train_summary"]["epochs_completed"] == 2  # the autoencoder alone trained longer
    assert longer.results["train_summary"]["epochs_completed"] == 1
    with pytest.raises(ValueError, match="not pre-trained"):
        run_experiment("unet", "quick", data, runs_dir=runs, progress=False, overrides={"upstream": {"x": 1}})


def test_killed_run_resumes_from_the_cli(env, monkeypatch, capsys):
    data, runs = env
    monkeypatch.setenv("PETSEG_DATA", str(data))
    args = ["train", "unet", "--runs-dir", str(runs), "--epochs", "2"]
    overrides = {"model": TINY["model"], "data": TINY["data"], "train": {"batch_size": 4, "max_steps_per_epoch": 2}}
    import petseg.experiment as experiment

    original = experiment.load_experiment_config
    monkeypatch.setattr(experiment, "load_experiment_config",
                        lambda name, profile="quick", extra=None: original(name, profile,
                                                                           experiment.deep_merge(overrides, extra or {})))
    assert main([*args, "--resume"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("petseg: nothing to resume")
    assert not runs.exists() or not any(runs.iterdir())  # nothing left behind
    import petseg.training.loop as train_module

    real_train = train_module.train

    def killed_after_one_epoch(*a, **k):
        def stop(record):
            if record["epoch"] == 1:
                raise KeyboardInterrupt
        return real_train(*a, **k, on_epoch_end=stop)

    monkeypatch.setattr(train_module, "train", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    run_dir = next(runs.iterdir())
    assert (run_dir / "last.pt").exists() and not (run_dir / "results.json").exists()
    monkeypatch.setattr(train_module, "train", real_train)
    assert main([*args, "--resume"]) == 0
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and history[-1]["global_step"] == 4
    results = json.loads((run_dir / "results.json").read_text())
    # the time of the epoch trained before the kill counts too
    assert results["resumed_after_seconds"] == round(history[0]["time_s"], 1)
    assert results["train_seconds"] >= history[0]["time_s"] + history[1]["time_s"] - 0.1


def test_book_fails_fast_and_in_one_line_without_data(monkeypatch, tmp_path, capsys):
    import time

    from petseg.data import download

    monkeypatch.delenv("PETSEG_DATA", raising=False)
    monkeypatch.setenv("PETSEG_CACHE", str(tmp_path))
    real = download.download_dataset
    monkeypatch.setattr(download, "download_dataset",
                        lambda target, **k: real(target, base_url="http://petseg-offline.invalid/data/", **k))
    start = time.perf_counter()
    assert main(["book"]) == 1
    assert time.perf_counter() - start < 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PETSEG_DATA" in err[0]


def test_predict_returns_images_masks_probabilities_and_padding(official_dataset, tmp_path):
    import numpy as np
    import torch

    from petseg.data.pipeline import prepare_data

    prepared = prepare_data(official_dataset, "quick", image_size=32, cache_dir=tmp_path / "c", progress=False)
    test_set = prepared.dataset("test", augment=False)
    model = torch.nn.Conv2d(3, 3, 1)
    out = predict(model, test_set, [0, 2], device="cpu")
    assert out["images"].shape == (2, 32, 32, 3) and out["images"].dtype == np.uint8
    assert out["masks"].shape == (2, 32, 32) and out["probabilities"].shape == (2, 3, 32, 32)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["padding"], np.stack([test_set.padding(0), test_set.padding(2)]))
    assert (out["masks"][out["padding"]] == 255).all()
    plain = [test_set[0], test_set[1]]  # a dataset that does not know its padding
    assert "padding" not in predict(model, plain, [1], device="cpu")


def test_a_checkpoint_scores_a_test_only_dataset(env, tmp_path):
    from tests.conftest import write_official

    data, runs = env
    run = run_experiment("unet", "quick", data, overrides=TINY, runs_dir=runs, progress=False)
    mine = write_official(tmp_path / "mine", per_breed=4)
    annotations = mine / "annotations"
    annotations.joinpath("test.txt").write_text(annotations.joinpath("list.txt").read_text().split("\n", 4)[-1])
    annotations.joinpath("trainval.txt").write_text("")
    result = evaluate_checkpoint(run.best_checkpoint, "test", data=mine)
    assert result["data"]["split"] == {"train": 0, "val": 0, "test": 12}
    assert 0 <= result["metrics"]["miou"] <= 1
    assert set(result["baselines"]) == {"all_background"}  # no training masks: no majority baseline


def test_baselines_stream_and_match_the_whole_split_at_once(official_dataset, tmp_path):
    import numpy as np
    import torch

    from petseg.data.pipeline import prepare_data
    from petseg.evaluation.metrics import ConfusionMatrix, majority_per_pixel_map, majority_prediction
    from petseg.evaluation.segmentation import _mask_batches, baseline_metrics

    prepared = prepare_data(official_dataset, "quick", image_size=32, cache_dir=tmp_path, progress=False)
    assert [len(b) for b in _mask_batches(prepared, prepared.split.test, batch=4)] == [4, 4, 4, 3]
    stack = lambda stems: torch.from_numpy(np.stack([prepared.cache.masks[prepared.cache.position(s)]  # noqa: E731
                                                     for s in stems]).astype(np.int64))
    test = stack(prepared.split.test)
    meter = ConfusionMatrix()
    meter.update(majority_prediction(majority_per_pixel_map(stack(prepared.split.train)), test), test)
    assert baseline_metrics(prepared)["majority_per_pixel"]["miou"] == pytest.approx(meter.compute()["miou"])


def test_a_recorded_run_keeps_per_image_confusions_panel_and_calibration(env, tmp_path):
    from petseg.reporting.evidence import interval
    from petseg.reporting.record_evidence import decode_mask
    from petseg.reporting.recorded import load_per_image, load_reference_results, record_run

    data, runs = env
    run = run_experiment("unet", "quick", data, overrides=TINY, runs_dir=runs, progress=False)
    (run.path / "per_image_test.csv").unlink()  # as if trained before per-image confusions: re-evaluated
    path = record_run(run.path, "unet", tmp_path / "ref", prepared=run.prepared)
    record = load_reference_results("quick", tmp_path / "ref")["unet-s0"]
    assert record["per_image"] == {"file": "unet-s0.per_image.csv.gz", "rows": 15}
    table = load_per_image("unet-s0", "quick", tmp_path / "ref")
    assert {"stem", "species", "breed", "n_cat_as_dog"} <= set(table.columns) and len(table) == 15
    assert interval(table, "miou").estimate == pytest.approx(record["test"]["miou"], abs=1e-9)
    panel = record["mask_panel"]
    assert len(panel["stems"]) == len(panel["masks"]) >= 5 and decode_mask(panel["masks"][0]).shape == (32, 32)
    assert sum(record["calibration"]["counts"]) > 0
    probe = record["species_probe"]
    assert probe["initial"]["encoder"] == "random init" and probe["trained"]["test_images"] == 15
    assert probe["trained"]["interval"][0] <= probe["trained"]["accuracy"] <= probe["trained"]["interval"][1]
    assert str(tmp_path) not in path.read_text()


def test_a_recorded_autoencoder_keeps_per_image_quality_and_its_probe(env, tmp_path):
    from petseg.reporting.evidence import interval
    from petseg.reporting.recorded import load_per_image, load_reference_results, record_run

    data, runs = env
    run = run_experiment("autoencoder", "quick", data, overrides=TINY, runs_dir=runs, progress=False)
    record_run(run.path, "autoencoder", tmp_path / "ref", prepared=run.prepared)
    record = load_reference_results("quick", tmp_path / "ref")["autoencoder-s0"]
    table = load_per_image("autoencoder-s0", "quick", tmp_path / "ref")
    assert {"stem", "species", "ssim", "psnr"} <= set(table.columns) and len(table) == 15
    assert interval(table, "ssim").estimate == pytest.approx(record["test"]["ssim"], abs=1e-3)
    assert record["species_probe"]["trained"]["test_images"] == 15
