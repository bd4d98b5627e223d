"""Tests for petseg.training (the loop, losses, schedule, checkpoints) on tiny synthetic data: learning, resume,
determinism, ignore pixels, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from petseg.data.labels import IGNORE_INDEX
from petseg.evaluation.metrics import ConfusionMatrix, per_image_metrics
from petseg.evaluation.segmentation import evaluate
from petseg.models import build_model
from petseg.models.autoencoder import ConvAutoencoder
from petseg.provenance import collect_provenance
from petseg.training.checkpoints import load_checkpoint, load_model_from_checkpoint
from petseg.training.config import TrainConfig, cpu_bf16_supported
from petseg.training.distributed import select_device
from petseg.training.loop import train
from petseg.training.losses import SegmentationLoss, soft_dice_loss
from petseg.training.schedule import build_scheduler
from petseg.training.seeds import seed_everything

torch.set_num_threads(1)
os.environ.setdefault("PETSEG_PROGRESS", "0")
TESTS_DIR = Path(__file__).resolve().parent


class SyntheticPets(Dataset):
    """``(image [3, S, S], mask [S, S])`` pairs following the data pipeline's contract.

    Each image holds one square "pet": reddish = cat (1), bluish = dog (2), on a noisy grey background
    (0). A one-pixel ring around the square is 255 (the trimap border) and the last ``pad_rows`` rows are
    padding: black image, mask 255.
    """

    def __init__(self, count: int, size: int = 16, seed: int = 0, pad_rows: int = 2) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.empty(count, 3, size, size)
        self.masks = torch.zeros(count, size, size, dtype=torch.long)
        for index in range(count):
            label = int(torch.randint(1, 3, (), generator=generator))
            side = int(torch.randint(4, size // 2 + 1, (), generator=generator))
            top, left = (int(v) for v in torch.randint(1, size - pad_rows - side, (2,), generator=generator))
            image = 0.5 + 0.1 * torch.randn(3, size, size, generator=generator)
            colour = torch.tensor([0.9, 0.2, 0.2] if label == 1 else [0.2, 0.2, 0.9]).view(3, 1, 1)
            image[:, top:top + side, left:left + side] = colour
            mask = self.masks[index]
            mask[max(top - 1, 0):top + side + 1, max(left - 1, 0):left + side + 1] = IGNORE_INDEX
            mask[top:top + side, left:left + side] = label
            if pad_rows:
                image[:, -pad_rows:] = 0.0
                mask[-pad_rows:] = IGNORE_INDEX
            self.images[index] = image.clamp(0, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


def make_model(name: str = "unet", **overrides: Any) -> torch.nn.Module:
    """A seeded tiny model (depth 3, base width 4) from the factory."""
    seed_everything(0)
    config = {"name": name, "depth": 3, "base_width": 4, "max_width": 16, "dropout": 0.1, **overrides}
    return build_model(config)


def quick_config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 1, "device": "cpu",
                              "seed": 0, "dice_weight": 0.5}
    values.update(overrides)
    return TrainConfig(**values)


def without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in record.items() if key != "time_s"} for record in history]


@pytest.fixture(scope="module")
def data() -> tuple[SyntheticPets, SyntheticPets]:
    return SyntheticPets(32, seed=0), SyntheticPets(12, seed=1)


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory) -> dict[str, Any]:
    """An uninterrupted 4-epoch run; other tests compare against it."""
    run_dir = tmp_path_factory.mktemp("reference")
    model = make_model()
    result = train(model, *data, quick_config(), run_dir, provenance={"command": "pytest"})
    result["final_state"] = {key: value.clone() for key, value in model.state_dict().items()}
    return result


# ------------------------------------------------------------------------------------------ training


def test_loss_goes_down_and_files_are_written(reference_run) -> None:
    history = reference_run["history"]
    run_dir = Path(reference_run["run_dir"])
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert reference_run["global_step"] == reference_run["total_steps"] == 4 * 4
    for key in ("val_miou", "val_mdice", "val_acc", "val_iou_background", "val_iou_cat", "val_iou_dog", "lr"):
        assert key in history[-1]
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert without_time(logged) == without_time(history)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "segmentation" and TrainConfig.from_dict(config["train"]) == quick_config()
    assert config["model"]["name"] == "unet"
    assert json.loads((run_dir / "provenance.json").read_text()) == {"command": "pytest"}
    assert not list(run_dir.glob("*.tmp"))


def test_checkpoints_are_complete_and_loadable(reference_run, data) -> None:
    run_dir = Path(reference_run["run_dir"])
    last = load_checkpoint(run_dir / "last.pt", make_model())
    assert last["epoch"] == 4 and last["global_step"] == 16
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "config", "task", "model_config"):
        assert key in last
    best = load_checkpoint(run_dir / "best.pt")
    assert best["epoch"] == reference_run["best_epoch"]
    assert best["best_metric"] == max(r["val_miou"] for r in reference_run["history"])
    model = load_model_from_checkpoint(run_dir / "last.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference_run["final_state"][key])
    # the per-epoch validation metrics are those of evaluate() on the whole validation set
    result = evaluate(model, data[1], device="cpu", batch_size=5)
    assert result["miou"] == pytest.approx(reference_run["history"][-1]["val_miou"], abs=1e-12)


def test_two_identical_runs_give_identical_metrics(reference_run, data, tmp_path) -> None:
    model = make_model()
    again = train(model, *data, quick_config(), tmp_path)
    assert without_time(again["history"]) == without_time(reference_run["history"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference_run["final_state"][key])


class Interrupt(RuntimeError):
    pass


def test_resume_after_crash_between_epochs(reference_run, data, tmp_path) -> None:
    def crash_after_epoch_2(record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(make_model(), *data, quick_config(), tmp_path, on_epoch_end=crash_after_epoch_2)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    model = make_model(dropout=0.1)
    seed_everything(123)  # different weights and RNG state: everything must come from last.pt
    model.head.reset_parameters()
    resumed = train(model, *data, quick_config(), tmp_path, resume=True)
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["global_step"] == reference_run["global_step"]
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == reference_run["global_step"]
    assert without_time(resumed["history"]) == without_time(reference_run["history"])
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


def test_resume_after_crash_inside_an_epoch(reference_run, data, tmp_path) -> None:
    def crash_at_step_10(info: dict[str, Any]) -> None:
        if info["global_step"] == 10:  # third step of epoch 3
            raise Interrupt

    with pytest.raises(Interrupt):
        train(make_model(), *data, quick_config(), tmp_path, on_step_end=crash_at_step_10)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    resumed = train(make_model(), *data, quick_config(), tmp_path, resume=True)
    assert resumed["global_step"] == 16
    assert without_time(resumed["history"]) == without_time(reference_run["history"])
    best = load_checkpoint(tmp_path / "best.pt", make_model())
    assert best["epoch"] == reference_run["best_epoch"]


def test_resume_refuses_a_changed_schedule_and_resume_without_checkpoint_starts_fresh(data, tmp_path) -> None:
    config = quick_config(epochs=1, max_steps_per_epoch=1)
    fresh = train(make_model(), *data, config, tmp_path, resume=True)  # no last.pt yet: a normal run
    assert fresh["resumed_from_epoch"] is None and fresh["global_step"] == 1
    with pytest.raises(ValueError, match="epochs: 1 -> 2"):
        train(make_model(), *data, quick_config(epochs=2, max_steps_per_epoch=1), tmp_path, resume=True)
    done = train(make_model(), *data, config, tmp_path, resume=True)  # already finished: nothing to do
    assert done["global_step"] == 1 and len(done["history"]) == 1


def test_onecycle_and_max_steps_per_epoch(data, tmp_path) -> None:
    config = quick_config(epochs=2, scheduler="onecycle", max_steps_per_epoch=2, class_weights=[0.5, 1, 1])
    result = train(make_model(), *data, config, tmp_path)
    assert result["global_step"] == 4 and result["steps_per_epoch"] == 2
    resumed = train(make_model(), *data, config, tmp_path, resume=True)
    assert resumed["global_step"] == 4


def test_reconstruction_task_runs(data, tmp_path) -> None:
    model = make_model("autoencoder", dropout=0.0)
    assert isinstance(model, ConvAutoencoder)
    result = train(model, *data, quick_config(epochs=2, lr=5e-3), tmp_path, task="reconstruction")
    record = result["history"][-1]
    assert {"val_loss", "val_ssim", "val_psnr"} <= set(record) and "val_miou" not in record
    assert result["metric_name"] == "val_loss" and result["best_metric"] == min(
        r["val_loss"] for r in result["history"])
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    ae_unet = build_model({"name": "ae_unet", "autoencoder_checkpoint": str(tmp_path / "best.pt"),
                           "freeze_encoder": True, "depth": 3, "base_width": 4, "max_width": 16})
    frozen = {key: value.clone() for key, value in ae_unet.encoder.state_dict().items()}
    train(ae_unet, *data, quick_config(epochs=1, max_steps_per_epoch=2), tmp_path / "ae_unet")
    for key, value in ae_unet.encoder.state_dict().items():
        assert torch.equal(value, frozen[key])  # weight decay must not touch a frozen encoder either


# -------------------------------------------------------------------------------- losses and ignore


def test_ignored_pixels_do_not_affect_loss() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, -2:] = IGNORE_INDEX  # padding rows
    target[0, 2, 2:5] = IGNORE_INDEX  # trimap border
    logits = torch.randn(2, 3, 8, 8)
    changed = logits.clone()
    changed[(target == IGNORE_INDEX).unsqueeze(1).expand_as(changed)] = 100.0
    loss = SegmentationLoss(class_weights=[0.2, 1.0, 2.0], dice_weight=1.0)
    assert torch.allclose(loss(logits, target), loss(changed, target))
    expected = F.cross_entropy(logits, target, weight=torch.tensor([0.2, 1.0, 2.0]), ignore_index=IGNORE_INDEX)
    assert torch.allclose(SegmentationLoss([0.2, 1.0, 2.0])(logits, target), expected)


def test_all_ignored_batch_gives_zero_loss_and_finite_gradients() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), IGNORE_INDEX)
    loss = SegmentationLoss(dice_weight=1.0)(logits, target)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_soft_dice_loss_values() -> None:
    target = torch.tensor([[[0, 1], [2, IGNORE_INDEX]]])
    perfect = F.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 3, 2, 2)
    # each present class: intersection 1/3, cardinality 3 * 1/3 + 1 = 2 -> dice 1/3
    assert soft_dice_loss(uniform, target).item() == pytest.approx(2 / 3)


def test_padding_does_not_affect_validation_metrics(data) -> None:
    model = make_model().eval()
    _, val_set = data
    result = evaluate(model, val_set, device="cpu", batch_size=4)
    with torch.no_grad():
        predictions = model(val_set.images).argmax(1)
    meter = ConfusionMatrix()
    meter.update(predictions, val_set.masks)
    np.testing.assert_array_equal(result["confusion_matrix"], meter.compute()["confusion_matrix"])
    assert result["confusion_matrix"].sum() == int((val_set.masks != IGNORE_INDEX).sum())
    assert result["binary"]["iou"].shape == (2,)
    per_image = result["per_image"]
    assert all(values.shape == (12,) for values in per_image.values())
    assert {"iou_background", "iou_cat", "iou_dog", "dice_dog", "miou", "pet_iou", "valid_pixels"} <= set(per_image)
    expected = per_image_metrics(predictions, val_set.masks)
    np.testing.assert_array_equal(per_image["iou_cat"], expected["iou"][:, 1])
    np.testing.assert_array_equal(per_image["miou"], expected["miou"])


# --------------------------------------------------------------------------------- config & helpers


def test_train_config_from_dict() -> None:
    config = TrainConfig.from_dict({"epochs": 3, "lr": 0.1, "class_weights": [1, 2, 3]})
    assert config.epochs == 3 and config.class_weights == [1.0, 2.0, 3.0]
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="step")


def test_cosine_schedule_warms_up_then_decays() -> None:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, TrainConfig(epochs=4, warmup_epochs=1), steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == sorted(lrs[:5]) and lrs[0] < 0.5
    assert lrs[5] == pytest.approx(1.0) and lrs[5:] == sorted(lrs[5:], reverse=True) and lrs[-1] < 0.05


def test_select_device_and_provenance() -> None:
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device("auto").type in ("cpu", "mps")
    provenance = collect_provenance({"data_fingerprint": "abc"})
    for key in ("command", "git", "python", "torch", "device_name", "cpu_count", "hostname", "utc_time"):
        assert key in provenance
    assert provenance["data_fingerprint"] == "abc"
    assert set(provenance["git"]) == {"commit", "dirty", "branch"}
    json.dumps(provenance)


def test_wrong_task_raises(data, tmp_path) -> None:
    with pytest.raises(ValueError, match="task"):
        train(make_model(), *data, quick_config(), tmp_path, task="detection")


# ------------------------------------------------------------------------------------- multi-process

DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests_dir!r})
    import torch
    torch.set_num_threads(1)
    from test_loop import SyntheticPets, make_model, quick_config
    from petseg.training.loop import train
    result = train(make_model(), SyntheticPets(20, seed=0), SyntheticPets(7, seed=1),
                   quick_config(epochs=2, batch_size=4), sys.argv[1])
    with open(os.path.join(sys.argv[2], f"rank{{os.environ['RANK']}}.json"), "w") as handle:
        json.dump({{"global_step": result["global_step"], "world_size": result["world_size"],
                   "history": result["history"]}}, handle)
""")


def test_torchrun_two_processes_on_cpu(tmp_path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests_dir=str(TESTS_DIR)))
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PETSEG_PROGRESS": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(run_dir), str(out_dir)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    ranks = [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # 20 images / 2 processes = 10 per process, batch 4 -> 3 steps per epoch, 2 epochs
    assert all(rank["world_size"] == 2 and rank["global_step"] == 6 for rank in ranks)
    assert without_time(ranks[0]["history"]) == without_time(ranks[1]["history"])
    assert sorted(path.name for path in run_dir.iterdir()) == ["best.pt", "config.json", "last.pt",
                                                               "metrics.jsonl"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    model = load_model_from_checkpoint(run_dir / "last.pt")
    assert load_checkpoint(run_dir / "last.pt")["world_size"] == 2
    # validation is sharded over the processes; the summed metrics equal a single-process evaluation
    result = evaluate(model, SyntheticPets(7, seed=1), device="cpu")
    last = ranks[0]["history"][-1]
    assert result["miou"] == pytest.approx(last["val_miou"], abs=1e-12)
    assert math.isclose(result["pixel_accuracy"], last["val_acc"], abs_tol=1e-12)


def test_training_says_what_it_will_do_and_how_long_it_will_take(data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PETSEG_PROGRESS", "1")
    train(make_model(), *data, quick_config(epochs=2, batch_size=2, max_steps_per_epoch=7), tmp_path)
    out = capsys.readouterr().out
    assert "2 epochs x 7 steps of 2 items (capped by max_steps_per_epoch; an epoch holds 32 items) = 14 optimiser " \
           "steps in fp32; validation on 12 images after each epoch" in out
    assert "s per step on its first steps: about" in out and "epoch 1/2 took" in out
    monkeypatch.setenv("PETSEG_PROGRESS", "0")
    train(make_model(), *data, quick_config(epochs=1, batch_size=8), tmp_path / "quiet")
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX-512 BF16 / AMX)")
def test_cpu_bf16_training_stays_within_noise_of_fp32(reference_run, data, tmp_path, monkeypatch, capsys) -> None:
    """bf16 autocast (the profiles' ``cpu_bf16``) learns as fp32 does: the same run's validation metrics stay
    within a few points, less than what a different seed moves them, and the plan line names the precision."""
    monkeypatch.setenv("PETSEG_PROGRESS", "1")
    bf16 = train(make_model(), *data, quick_config(cpu_bf16=True), tmp_path / "bf16")
    assert "optimiser steps in bf16 autocast;" in capsys.readouterr().out
    seed_1 = train(make_model(), *data, quick_config(seed=1), tmp_path / "seed1")
    fp32, low = reference_run["history"][-1], bf16["history"][-1]
    assert low["train_loss"] < 0.7 * bf16["history"][0]["train_loss"]
    seed_noise = abs(seed_1["history"][-1]["val_miou"] - fp32["val_miou"])
    assert abs(low["val_miou"] - fp32["val_miou"]) <= max(0.05, 2 * seed_noise)
    assert abs(low["val_loss"] - fp32["val_loss"]) <= 0.1 * fp32["val_loss"]
    assert low != fp32  # it really ran in bf16 (identical floats would mean autocast was off)


def test_cpu_bf16_is_off_where_unsupported(data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("petseg.training.loop.cpu_bf16_supported", lambda: False)
    monkeypatch.setenv("PETSEG_PROGRESS", "1")
    train(make_model(), *data, quick_config(cpu_bf16=True, epochs=1), tmp_path / "run")
    assert "optimiser steps in fp32;" in capsys.readouterr().out
