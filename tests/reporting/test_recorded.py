"""Tests for petseg.reporting.recorded (recorded full-profile results) and the `petseg record` / `--set` options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from petseg.cli import build_parser, parse_overrides
from petseg.errors import ConfigError
from petseg.experiment import Run
from petseg.provenance import git_state
from petseg.reporting import recorded as reference_runs


def fake_run_dir(root: Path, name: str, profile: str = "full", seed: int = 0, **test: float) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    results = {"experiment": name.split("-")[0], "profile": profile, "seed": seed, "train_seconds": 12.5,
               "data": {"image_size": 512, "fingerprint": "abc"},
               "train_summary": {"epochs_completed": 60, "best_checkpoint": "/gpu/best.pt",
                                 "last_checkpoint": "/gpu/last.pt", "history": [{"epoch": 1}]},
               "provenance": {"gpu_names": ["NVIDIA H200"], "cpu_count": 16, "git": {"commit": "0123456789abcdef"},
                              "data_fingerprint": "abc"},
               "test": test or {"miou": 0.81234, "mdice": 0.88, "pixel_accuracy": 0.93}}
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.json").write_text(json.dumps({"train": {"epochs": 60}}))
    (run_dir / "best.pt").write_bytes(b"weights stay out of the record")
    return run_dir


def test_record_run_writes_a_small_self_describing_file(tmp_path: Path) -> None:
    path = reference_runs.record_run(fake_run_dir(tmp_path / "runs", "unet-full-s0-x"), "unet", tmp_path / "ref")
    assert path == tmp_path / "ref" / "full" / "unet-s0.json"
    record = json.loads(path.read_text())
    assert record["key"] == "unet" and record["config"] == {"train": {"epochs": 60}}
    assert "best_checkpoint" not in record["train_summary"] and record["test"]["miou"] == 0.81234
    loaded = reference_runs.load_reference_results("full", tmp_path / "ref")
    table = reference_runs.reference_table(loaded)
    assert table.loc["unet-s0", "mIoU"] == 0.812 and table.loc["unet-s0", "hardware"] == "NVIDIA H200"
    assert table.loc["unet-s0", "epochs"] == 60 and table.loc["unet-s0", "commit"] == "0123456789"
    assert table.loc["unet-s0", "changed from the profile"] == "nothing" and list(table.columns[:3]) == [
        "mIoU", "mDice", "accuracy"]
    assert reference_runs.load_reference_results("quick", tmp_path / "ref") == {}
    assert reference_runs.reference_table(loaded, keys=["ae_unet_frozen"]).empty


def test_record_run_refuses_an_unfinished_run_and_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did not finish"):
        reference_runs.record_run(tmp_path, "unet", tmp_path / "ref")
    (tmp_path / "ref" / "full").mkdir(parents=True)
    (tmp_path / "ref" / "full" / "x-s0.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="unknown record format"):
        reference_runs.load_reference_results("full", tmp_path / "ref")


def test_record_reference_runs_merges_overrides_records_upstream_and_keeps_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    fake_run_dir(runs, "autoencoder-full-s0-a", ssim=0.5, psnr=20.0)
    calls = []

    def fake_run_experiment(name, profile, data, seed, *, tag=None, overrides=None, **kwargs):
        calls.append((name, tag, overrides, kwargs))
        run_dir = fake_run_dir(runs, f"{name}-{tag}-{profile}-s{seed}-{len(calls)}")
        config = {"pretrained_from": "autoencoder", "upstream_run": "autoencoder-full-s0-a"} if name == "ae_unet" else {}
        return Run(run_dir, config, {}, reused=False)

    monkeypatch.setattr("petseg.experiment.run_experiment", fake_run_experiment)
    written = reference_runs.record_reference_runs(
        ["ae_unet_frozen", "unet"], "full", None, 0, tmp_path / "ref",
        overrides={"train": {"num_workers": 12}}, device="cuda")
    assert set(written) == {"ae_unet_frozen", "autoencoder", "unet"} and all(written.values())
    assert calls[0][2] == {"model": {"freeze_encoder": True}, "train": {"num_workers": 12}}
    assert calls[0][3] == {"device": "cuda"} and calls[1][1] is None
    autoencoder = json.loads(written["autoencoder"].read_text())
    assert autoencoder["test"] == {"ssim": 0.5, "psnr": 20.0} and autoencoder["overrides"] == {"train": {"num_workers": 12}}
    table = reference_runs.reference_table(reference_runs.load_reference_results("full", tmp_path / "ref"))
    assert table.loc["autoencoder-s0", "changed from the profile"] == "nothing"  # workers only change speed
    assert list(table.columns[:5]) == ["mIoU", "mDice", "accuracy", "SSIM", "PSNR"]
    skipped = reference_runs.record_reference_runs(["unet", "efficientnet_unet"], "full", None, 0, tmp_path / "r2",
                                                   budget_seconds=0)
    assert skipped == {"unet": None, "efficientnet_unet": None}
    with pytest.raises(ValueError, match="unknown model"):
        reference_runs.record_reference_runs(["nope"], out_dir=tmp_path / "r3")


def test_set_overrides_parse_nested_yaml_values() -> None:
    assert parse_overrides(["train.num_workers=12", "train.lr=1e-3", "data.species_multipliers=balance",
                            "model.dropout=0.2"]) == {"train": {"num_workers": 12, "lr": 1e-3},
                                                      "data": {"species_multipliers": "balance"},
                                                      "model": {"dropout": 0.2}}
    assert parse_overrides(None) == {}
    for bad in (["train.epochs"], ["=3"], ["train..x=1"]):
        with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
            parse_overrides(bad)
    with pytest.raises(ConfigError, match="conflicts"):
        parse_overrides(["train=1", "train.lr=2"])
    args = build_parser().parse_args(["record", "unet", "ae_unet_frozen", "--set", "train.num_workers=8",
                                      "--budget-minutes", "9"])
    assert args.models == ["unet", "ae_unet_frozen"] and args.profile == "full" and args.budget_minutes == 9


def test_git_state_outside_a_checkout_reads_the_commit_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PETSEG_GIT_COMMIT", raising=False)
    assert git_state(tmp_path)["commit"] is None
    monkeypatch.setenv("PETSEG_GIT_COMMIT", "feedbeef")
    monkeypatch.setenv("PETSEG_GIT_DIRTY", "0")
    state = git_state(tmp_path)
    assert state["commit"] == "feedbeef" and state["dirty"] is False and "PETSEG_GIT_COMMIT" in state["source"]


def test_recorded_summary_says_how_to_record_or_shows_the_records(tmp_path: Path) -> None:
    text, table = reference_runs.recorded_summary(["unet"], "full", tmp_path / "ref")
    assert table is None and "No `full`-profile run" in text and "petseg record unet --profile full" in text
    reference_runs.record_run(fake_run_dir(tmp_path / "runs", "unet-full-s0-x"), "unet", tmp_path / "ref")
    text, table = reference_runs.recorded_summary(["unet"], "full", tmp_path / "ref", fingerprint="abc")
    assert list(table.index) == ["unet-s0"] and "Data differs" not in text
    text, _ = reference_runs.recorded_summary(["unet"], "full", tmp_path / "ref", fingerprint="other")
    assert "Data differs" in text and "abc" in text and "Not recorded yet" not in text
    text, table = reference_runs.recorded_summary(["unet", "fusion_film"], "full", tmp_path / "ref")
    assert list(table.index) == ["unet-s0"] and "Not recorded yet: fusion_film." in text


def test_recorded_summary_names_only_recordable_models_in_its_command(tmp_path: Path) -> None:
    text, _ = reference_runs.recorded_summary(["autoencoder", "ae_unet_frozen"], "full", tmp_path)
    assert "petseg record ae_unet_frozen --profile full" in text


def test_shortened_recordings_say_what_was_changed(tmp_path: Path) -> None:
    run_dir = fake_run_dir(tmp_path / "runs", "unet-full-s0-x")
    reference_runs.record_run(run_dir, "unet", tmp_path / "ref",
                              {"train": {"epochs": 1, "batch_size": 2, "num_workers": 12}, "data": {"image_size": 256}})
    table = reference_runs.reference_table(reference_runs.load_reference_results("full", tmp_path / "ref"))
    assert table.loc["unet-s0", "changed from the profile"] == "train.epochs=1, train.batch_size=2, data.image_size=256"


def test_overrides_for_upstream_keep_train_data_and_encoder_shape() -> None:
    from petseg.config import overrides_for_upstream

    overrides = {"train": {"epochs": 1}, "data": {"image_size": 64},
                 "model": {"base_width": 8, "freeze_encoder": True, "dropout": 0.2}}
    assert overrides_for_upstream(overrides) == {"train": {"epochs": 1}, "data": {"image_size": 64},
                                                 "model": {"base_width": 8}}
    assert overrides_for_upstream(None) == {} and overrides_for_upstream({"model": {"dropout": 0.1}}) == {}
    assert overrides_for_upstream({"train": {"epochs": 12, "lr": 1.0}, "upstream": {"train": {"epochs": 32}}}) == {
        "train": {"epochs": 32, "lr": 1.0}}  # the upstream section applies to the pre-trained run alone


def test_labelled_records_are_ablations_kept_apart_from_the_profiles_results(tmp_path: Path) -> None:
    run_dir = fake_run_dir(tmp_path / "runs", "unet-epochs48-quick-s0-x", profile="quick")
    path = reference_runs.record_run(run_dir, "unet", tmp_path / "ref", {"train": {"epochs": 48}}, label="epochs48")
    assert path == tmp_path / "ref" / "ablations" / "unet-epochs48-s0.json"
    assert json.loads(path.read_text())["label"] == "epochs48"
    assert reference_runs.load_reference_results("quick", tmp_path / "ref") == {}  # never a profile's own result
    text, table = reference_runs.recorded_summary(["unet"], "quick", tmp_path / "ref")
    assert table is None and "No `quick`-profile run" in text
    for bad in ("", "-x", "two words", "a/b"):
        with pytest.raises(ValueError, match="ablation label"):
            reference_runs.record_run(run_dir, "unet", tmp_path / "ref", label=bad)


def test_recorded_ablations_table_ranks_variants_below_this_builds_run(tmp_path: Path) -> None:
    text, table = reference_runs.recorded_ablations("unet", tmp_path / "ref")
    assert table is None and "No ablation of `unet`" in text and "--label NAME" in text

    def result(miou: float, dog: float) -> dict:
        return {"miou": miou, "mdice": 0.8, "pixel_accuracy": 0.9, "class_names": ["background", "cat", "dog"],
                "iou": [0.9, 0.7, dog], "binary": {"miou": 0.77}}

    for label, miou, dog in (("small", 0.60, 0.40), ("big", 0.70, 0.55)):
        run_dir = tmp_path / "runs" / label
        fake_run_dir(run_dir.parent, label, profile="quick")
        results = json.loads((run_dir / "results.json").read_text())
        (run_dir / "results.json").write_text(json.dumps({**results, "test": result(miou, dog)}))
        reference_runs.record_run(run_dir, "unet", tmp_path / "ref", {"train": {"epochs": 48}}, label=label)
    reference_runs.record_run(fake_run_dir(tmp_path / "runs", "other-model"), "ae_unet_frozen", tmp_path / "ref",
                              label="x")
    this_build = {**json.loads((tmp_path / "runs" / "small" / "results.json").read_text()), "test": result(0.5, 0.3)}
    text, table = reference_runs.recorded_ablations("unet", tmp_path / "ref", fingerprint="abc", this_build=this_build)
    assert list(table["ablation"]) == ["none (this build)", "big", "small"]  # then best mIoU first
    assert list(table["mIoU"]) == [0.5, 0.7, 0.6] and list(table["IoU dog"]) == [0.3, 0.55, 0.4]
    assert table.loc["unet-big-s0", "changed from the profile"] == "train.epochs=48"
    assert table.loc["unet-big-s0", "pet vs bg mIoU"] == 0.77 and list(table.columns[:3]) == ["ablation", "profile",
                                                                                              "mIoU"]
    assert list(table["mIoU change"]) == [0.0, 0.2, 0.1]
    assert "seed 0" in text and "Data differs" not in text and "`big` (train.epochs=48), reaches mIoU 0.700, +0.200" in text
    assert "on this page's data" in text
    assert "Data differs" in reference_runs.recorded_ablations("unet", tmp_path / "ref", fingerprint="zzz")[0]
    # recorded on other data: no row for this build and no change against it, which would compare two datasets
    text, table = reference_runs.recorded_ablations("unet", tmp_path / "ref", fingerprint="zzz", this_build=this_build)
    assert list(table["ablation"]) == ["big", "small"] and "mIoU change" not in table
    assert "trained on other data than this page's" in text and "fingerprint abc" in text and "+0.200" not in text
    # mixed: a row on this page's data is compared, the rows on other data are listed last without a change
    run_dir = tmp_path / "runs" / "here"
    fake_run_dir(run_dir.parent, "here", profile="quick")
    here = json.loads((run_dir / "results.json").read_text())
    here["data"] = {**here["data"], "fingerprint": "zzz"}
    here["provenance"] = {**here.get("provenance", {}), "data_fingerprint": "zzz"}
    (run_dir / "results.json").write_text(json.dumps({**here, "test": result(0.55, 0.35)}))
    reference_runs.record_run(run_dir, "unet", tmp_path / "ref", label="here")
    text, table = reference_runs.recorded_ablations("unet", tmp_path / "ref", fingerprint="zzz", this_build=this_build)
    assert list(table["ablation"]) == ["none (this build)", "here", "big", "small"]
    assert list(table["mIoU change"])[:2] == [0.0, 0.05] and table["mIoU change"].iloc[2:].isna().all()
    assert "`here` (nothing), reaches mIoU 0.550, +0.050" in text and "The last 2 rows were trained on other data" in text
    words = reference_runs.ablation_target_words(table, "zzz", 0.80)
    assert words.startswith("Against the full profile's target of mIoU 0.80: the best of the rows on this page's "
                            "data reaches 0.550, 0.250 short of it")  # big (0.70) was trained on other data
    assert reference_runs.ablation_target_words(table, "nope", 0.80) == ""
    assert reference_runs.ablation_target_words(None, "zzz", 0.80) == ""
    for label, ssim in (("short", 0.3), ("long", 0.6)):  # autoencoders rank by SSIM
        fake_run_dir(tmp_path / "runs", f"autoencoder-{label}", ssim=ssim, psnr=20.0)
        reference_runs.record_run(tmp_path / "runs" / f"autoencoder-{label}", "autoencoder", tmp_path / "ref",
                                  label=label)
    own = {**json.loads((tmp_path / "runs" / "autoencoder-short" / "results.json").read_text()),
           "test": {"ssim": 0.35, "psnr": 14.0}}
    text, table = reference_runs.recorded_ablations("autoencoder", tmp_path / "ref", this_build=own)
    assert list(table["ablation"]) == ["none (this build)", "long", "short"] and "mIoU" not in table
    assert list(table["SSIM change"]) == [0.0, 0.25, -0.05] and "reaches SSIM 0.600, +0.250" in text


def test_record_reference_runs_with_a_label_tags_the_runs_and_the_upstream_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    fake_run_dir(runs, "autoencoder-wide-full-s0-a", ssim=0.5, psnr=20.0)
    tags = []

    def fake_run_experiment(name, profile, data, seed, *, tag=None, overrides=None, **kwargs):
        tags.append(tag)
        run_dir = fake_run_dir(runs, f"{name}-{tag}-{profile}-s{seed}")
        return Run(run_dir, {"pretrained_from": "autoencoder", "upstream_run": "autoencoder-wide-full-s0-a"}, {},
                   reused=False)

    monkeypatch.setattr("petseg.experiment.run_experiment", fake_run_experiment)
    written = reference_runs.record_reference_runs(["ae_unet_frozen"], "full", None, 0, tmp_path / "ref",
                                                   label="wide")
    assert tags == ["frozen-wide"]
    assert written["autoencoder"] == tmp_path / "ref" / "ablations" / "autoencoder-wide-s0.json"
    with pytest.raises(ValueError, match="ablation label"):
        reference_runs.record_reference_runs(["unet"], label="no good", out_dir=tmp_path / "ref")
    args = build_parser().parse_args(["record", "unet", "--label", "epochs48", "--set", "train.epochs=48"])
    assert args.label == "epochs48"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "unet", "--label", "two words"])


def test_a_record_made_under_an_old_experiment_name_is_read_under_the_new_one(tmp_path: Path) -> None:
    """Issue 15: clip_unet is now fusion_unet; records made before keep their file, and are read as fusion_unet."""
    run_dir = fake_run_dir(tmp_path / "runs", "clip_unet-film-full-s0-x")
    results = json.loads((run_dir / "results.json").read_text())
    results["provenance"]["experiment"] = "clip_unet"
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.json").write_text(json.dumps({"experiment": "clip_unet", "train": {"epochs": 60}}))
    path = reference_runs.record_run(run_dir, "fusion_film", tmp_path / "ref")
    assert json.loads(path.read_text())["experiment"] == "clip_unet"  # written as it was

    loaded = reference_runs.load_reference_results("full", tmp_path / "ref")["fusion_film-s0"]
    assert loaded["experiment"] == loaded["provenance"]["experiment"] == loaded["config"]["experiment"] == "fusion_unet"
    assert loaded["run_name"] == "clip_unet-film-full-s0-x"  # a folder's name on the machine that trained
    assert json.loads(path.read_text())["experiment"] == "clip_unet"  # the file is not changed
    text, table = reference_runs.recorded_summary(["fusion_film"], "full", tmp_path / "ref")
    assert table is not None and list(table.index) == ["fusion_film-s0"] and "No `full`" not in text


def test_the_committed_records_are_found_under_current_names() -> None:
    """book/reference_run (petseg.paths.RECORDED_RUNS_DIR) is the default; its fusion record predates the rename."""
    from petseg.catalog import CATALOG
    from petseg.paths import RECORDED_RUNS_DIR, recorded_runs_dir

    assert recorded_runs_dir().relative_to(recorded_runs_dir().parents[1]).as_posix() == RECORDED_RUNS_DIR
    for profile in ("standard", reference_runs.ABLATIONS):
        for name, record in reference_runs.load_reference_results(profile).items():
            assert record["key"] in CATALOG or record["key"] == "autoencoder", name
            assert record["experiment"] in (CATALOG[record["key"]].experiment if record["key"] in CATALOG
                                            else "autoencoder"), name
    assert reference_runs.load_reference_results("standard")["fusion_film-s0"]["experiment"] == "fusion_unet"
    _, table = reference_runs.recorded_summary(["fusion_film"], "standard")
    assert table is not None and "fusion_film-s0" in table.index


def test_prompted_records_show_click_box_and_noc_columns(tmp_path: Path) -> None:
    run_dir = fake_run_dir(tmp_path / "runs", "sam2_effnet-standard-s0-x", profile="standard",
                           one_click={"iou": [0.97, 0.944]}, box={"iou": [0.973, 0.9495]},
                           interactive={"noc90": 2.255}, binary={"miou": 0.957})
    reference_runs.record_run(run_dir, "sam2_effnet", tmp_path / "ref")
    table = reference_runs.reference_table(reference_runs.load_reference_results("standard", tmp_path / "ref"))
    row = table.loc["sam2_effnet-s0"]
    assert (row["1-click IoU pet"], row["box IoU pet"], row["NoC@90"], row["pet vs bg mIoU"]) == (
        0.944, 0.95, 2.25, 0.957)
