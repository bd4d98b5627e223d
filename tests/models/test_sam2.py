"""SAM 2 variants: forward contract, prompted loss, training through the shared loop (resume), the
SAM2ImagePredictor round trip, checkpoint loading errors, the interactive protocol."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from petseg.data.fetch import OfflineError
from petseg.evaluation.clicks import evaluate_prompted, interactive_subset, number_of_clicks, prompted_table
from petseg.models import build_model
from petseg.models import sam2 as sam2_module
from petseg.models.sam2 import Sam2CheckpointError, fetch_official_checkpoint, load_sam2_predictor
from petseg.training.loop import train
from petseg.training.losses import PromptedLoss
from petseg.training.tasks import prompted_prediction

torch.set_num_threads(1)
os.environ.setdefault("PETSEG_PROGRESS", "0")
SIZE = 64


class Blobs(Dataset):
    """Images with one bright square pet (label 1 or 2) on a dark background, a 255 border row."""

    def __init__(self, count: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for index in range(count):
            image = rng.uniform(0, 0.3, (3, SIZE, SIZE)).astype(np.float32)
            mask = np.zeros((SIZE, SIZE), np.int64)
            top, left = rng.integers(4, 28, 2)
            side = int(rng.integers(16, 32))
            image[:, top:top + side, left:left + side] += 0.6
            mask[top:top + side, left:left + side] = 1 + index % 2
            mask[-2:, :] = 255  # padding
            self.items.append((torch.from_numpy(image), torch.from_numpy(mask)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]


def tiny_effnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"name": "sam2_effnet", "image_size": SIZE, "pretrained_trunk": False})


def test_forward_contract_and_frozen_parts() -> None:
    model = tiny_effnet()
    images, masks = zip(*(Blobs(4)[i] for i in range(4)), strict=True)
    images, masks = torch.stack(images), torch.stack(masks)
    outputs = model(images, masks, rng=np.random.default_rng(0))
    assert outputs["logits"].shape == (4, 4, SIZE, SIZE) and outputs["iou_predictions"].shape == (4, 4)
    candidates = outputs["candidates"]
    assert (candidates.sum(dim=1) >= 1).all() and (candidates[:, 0] ^ candidates[:, 1]).all()
    model.eval()
    outputs = model(images, masks)  # eval: one interior click, multimask
    assert outputs["candidates"][:, 1:].all() and not outputs["candidates"][:, 0].any()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(".trunk." in name or "memory_" in name for name in trainable)
    assert any("sam_mask_decoder" in name for name in trainable)
    with pytest.raises(ValueError, match="differ in size"):
        model(images, masks[:, :32, :32])


def test_prompted_loss_prefers_the_truth_ignores_255_and_takes_the_best_candidate() -> None:
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[:, 2:6, 2:6] = 2
    masks[:, 0, :] = 255
    truth = torch.where(masks == 2, 10.0, -10.0).float()
    candidates = torch.tensor([[False, True, True, True]])
    iou = torch.ones(1, 4)

    def outputs(logits: torch.Tensor, scores: torch.Tensor = iou) -> dict:
        return {"logits": logits, "iou_predictions": scores, "candidates": candidates}

    loss = PromptedLoss(dice_weight=1.0, iou_weight=0.0)
    good = torch.stack([-truth, -truth, truth, -truth], dim=1)
    bad = torch.stack([truth, -truth, -truth, -truth], dim=1)  # only the non-candidate mask is right
    assert loss(outputs(good), masks) < 0.1 < loss(outputs(bad), masks)
    # the IoU head is trained towards each candidate's true IoU (0, 1, 0 here)
    with_iou = PromptedLoss(dice_weight=1.0, iou_weight=1.0)
    right_scores = torch.tensor([[0.5, 0.0, 1.0, 0.0]])
    assert with_iou(outputs(good, right_scores), masks) < 0.1 < with_iou(outputs(good), masks)
    changed = good.clone()
    changed[:, :, 0, :] = 10.0  # differences on ignored pixels only
    assert torch.isclose(loss(outputs(good), masks), loss(outputs(changed), masks))
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2]])  # mask 0 scores best but is no candidate
    prediction = prompted_prediction({"logits": good, "iou_predictions": scores, "candidates": candidates})
    assert torch.equal(prediction[0, 1:], (masks[0, 1:] == 2).long())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("sam2run")
    config = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup_epochs": 0, "num_workers": 0, "seed": 1}
    summary = train(tiny_effnet(), Blobs(8), Blobs(4, seed=1), config, run_dir, task="prompted")
    return run_dir, summary


def test_prompted_training_logs_metrics_and_resumes_identically(trained_run, tmp_path: Path) -> None:
    run_dir, reference = trained_run
    assert reference["metric_name"] == "val_iou_pet" and (run_dir / "best.pt").is_file()
    record = reference["history"][-1]
    assert {"train_loss", "val_loss", "val_iou_pet", "val_dice_pet", "val_acc"} <= set(record)

    class Stop(RuntimeError):
        pass

    def stop(record: dict) -> None:
        raise Stop

    config = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup_epochs": 0, "num_workers": 0, "seed": 1}
    with pytest.raises(Stop):
        train(tiny_effnet(), Blobs(8), Blobs(4, seed=1), config, tmp_path, task="prompted", on_epoch_end=stop)
    resumed = train(tiny_effnet(), Blobs(8), Blobs(4, seed=1), config, tmp_path, task="prompted", resume=True)
    assert resumed["resumed_from_epoch"] == 1

    def without_time(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in history]

    assert without_time(resumed["history"]) == without_time(reference["history"])


def test_predictor_round_trip_from_a_run_directory(trained_run) -> None:
    run_dir, _ = trained_run
    predictor = load_sam2_predictor(run_dir)
    image, mask = Blobs(1, seed=5)[0]
    predictor.set_image((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    masks, scores, low_res = predictor.predict(point_coords=np.array([[30, 30]]), point_labels=np.array([1]))
    assert masks.shape == (3, SIZE, SIZE) and scores.shape == (3,) and low_res.shape == (3, SIZE // 4, SIZE // 4)
    box_masks, _, _ = predictor.predict(box=np.array([4, 4, 40, 40]), multimask_output=False)
    assert box_masks.shape == (1, SIZE, SIZE)
    # the predictor path equals the model's own eval forward for the same click
    model = build_model({"name": "sam2_effnet", "image_size": SIZE, "pretrained_trunk": False})
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    model.eval()
    features = model.image_features(image[None])
    low, iou = model.decode(features, torch.tensor([[[30.0, 30.0]]]), torch.tensor([[1]], dtype=torch.int32))
    assert np.allclose(iou[0, 1:].detach().numpy(), scores, atol=1e-4)


def test_evaluate_prompted_reports_every_protocol(trained_run) -> None:
    run_dir, _ = trained_run
    predictor = load_sam2_predictor(run_dir / "best.pt")
    results, per_image = evaluate_prompted(predictor, Blobs(3, seed=2), max_clicks=4, interactive_indices=[0, 2])
    assert results["interactive"]["images"] == 2 and len(results["interactive"]["miou_per_click"]) == 4
    assert 1 <= results["interactive"]["noc85"] <= 4 and results["binary"] == results["one_click"]
    assert len(per_image) == 3 and per_image["noc90"].isna().sum() == 1
    assert 0 <= results["box"]["iou"][1] <= 1 and results["latency"]["embed_ms"] > 0
    table = prompted_table({"model": results})
    assert table.loc["model", "20-click images"] == 2
    assert table.loc["model", "1-click IoU (pet)"] == round(results["one_click"]["iou"][1], 3)


def test_number_of_clicks_and_subset() -> None:
    assert number_of_clicks([0.5, 0.86, 0.95], 0.85, 20) == 2
    assert number_of_clicks([0.5, 0.6], 0.9, 20) == 20
    assert interactive_subset(10, None) is None and interactive_subset(10, 20) is None
    assert interactive_subset(11, 3) == [0, 5, 10]


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SAM 2 checkpoint"):
        load_sam2_predictor(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="best.pt"):
        load_sam2_predictor(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_sam2_predictor(garbage)
    other = tmp_path / "unet.pt"
    torch.save({"model": {}, "model_config": {"name": "unet"}}, other)
    with pytest.raises(ValueError, match="not of SAM 2"):
        load_sam2_predictor(other)
    plain = tmp_path / "plain.pt"
    torch.save({"model": {"weight": torch.zeros(1)}}, plain)
    with pytest.raises(ValueError, match="neither"):
        load_sam2_predictor(plain)


def test_official_checkpoint_offline_is_one_line_and_fast(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(Sam2CheckpointError, match="not found"):
        fetch_official_checkpoint("tiny", tmp_path, download=False)

    def unreachable(url: str, timeout: float = 1.0) -> None:
        raise OfflineError("Cannot download the Oxford-IIIT Pet dataset: cannot resolve host x. To work offline, ...")

    monkeypatch.setattr("petseg.data.fetch.check_reachable", unreachable)
    started = time.perf_counter()
    with pytest.raises(Sam2CheckpointError) as error:
        fetch_official_checkpoint("small", tmp_path)
    assert time.perf_counter() - started < 1.0
    message = str(error.value)
    assert "\n" not in message and "sam2.1_hiera_small.pt" in message and "Oxford" not in message
    with pytest.raises(ValueError, match="hiera_size"):
        fetch_official_checkpoint("huge", tmp_path)


def test_recorded_checksum_is_verified(tmp_path: Path) -> None:
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(b"weights")
    (tmp_path / "sam2.1_hiera_tiny.pt.sha256.json").write_text('{"size": 7, "sha256": "0000"}')
    with pytest.raises(Sam2CheckpointError, match="does not match"):
        fetch_official_checkpoint("tiny", tmp_path)


def test_effnet_rejects_official_checkpoints_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="no official checkpoint"):
        build_model({"name": "sam2_effnet", "checkpoint": "x.pt"})
    with pytest.raises(ValueError, match="multiple of 64"):
        build_model({"name": "sam2_effnet", "image_size": 100})


@pytest.mark.slow
def test_official_format_checkpoint_round_trip(tmp_path: Path) -> None:
    """A file in Meta's format (``{"model": SAM2Base state}``) loads as Hiera-tiny at 1024 px, and
    fine-tuning from it starts from exactly those weights."""
    torch.manual_seed(0)
    sam = sam2_module.build_sam2_base("tiny", 1024)
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam.state_dict()}, path)
    predictor = load_sam2_predictor(path)
    assert predictor.model.image_size == 1024
    key = "sam_mask_decoder.iou_token.weight"
    assert torch.equal(predictor.model.state_dict()[key], sam.state_dict()[key])
    model = build_model({"name": "sam2_hiera", "image_size": 256, "checkpoint": str(path)})
    assert torch.equal(model.sam.state_dict()[key], sam.state_dict()[key])
    with pytest.raises(ValueError, match="Hiera-tiny"):
        build_model({"name": "sam2_hiera", "hiera_size": "small", "image_size": 256, "checkpoint": str(path)})


def test_corrective_rounds_add_protocol_clicks(monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "sam2_effnet", "image_size": SIZE, "pretrained_trunk": False,
                         "corrective_rounds": 2, "box_probability": 0.0, "max_extra_clicks": 0})
    seen: list[int] = []
    original = model._batch_prompts

    def spy(prompts, scale, device):
        seen.append(max(len(p.labels) for p in prompts))
        return original(prompts, scale, device)

    monkeypatch.setattr(model, "_batch_prompts", spy)
    images, masks = zip(*(Blobs(2)[i] for i in range(2)), strict=True)
    runs = []
    for seed in range(8):
        seen.clear()
        outputs = model(torch.stack(images), torch.stack(masks), rng=np.random.default_rng(seed))
        runs.append(list(seen))
        # the first prompt, then one more click per round (none once a prediction is perfect), then the pass
        # that is trained on, with the single-mask output as soon as there is more than one click
        assert seen[0] == 1 and seen[-1] == max(seen) and all(b - a in (0, 1) for a, b in zip(seen, seen[1:], strict=False))
        if seen[-1] > 1:
            assert not outputs["candidates"][:, 1:].any()
    assert {len(r) for r in runs} == {1, 2, 3} and [1, 2, 3] in runs  # 0, 1 and 2 rounds all occur
    with pytest.raises(ValueError, match="corrective_rounds"):
        build_model({"name": "sam2_effnet", "image_size": SIZE, "pretrained_trunk": False, "corrective_rounds": -1})


def test_download_records_size_and_sha256_then_verifies(tmp_path: Path, monkeypatch) -> None:
    """Download from a local HTTP server: the file lands under its official name with a size/sha256 record,
    a second call uses it without the network, a changed file is refused."""
    import functools
    import hashlib
    import http.server
    import threading

    served = tmp_path / "server"
    served.mkdir()
    payload = b"pretend SAM 2.1 weights" * 100
    (served / "sam2.1_hiera_tiny.pt").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(sam2_module, "OFFICIAL_BASE_URL", f"http://127.0.0.1:{server.server_port}/")
        cache = tmp_path / "cache"
        path = fetch_official_checkpoint("tiny", cache)
        assert path.read_bytes() == payload
        record = (cache / "sam2.1_hiera_tiny.pt.sha256.json").read_text()
        assert hashlib.sha256(payload).hexdigest() in record
    finally:
        server.shutdown()
    assert fetch_official_checkpoint("tiny", cache) == path  # server gone: no network needed
    path.write_bytes(payload[:-1])
    with pytest.raises(Sam2CheckpointError, match="does not match"):
        fetch_official_checkpoint("tiny", cache)


def test_build_sam2_model_goes_through_the_registry() -> None:
    model = sam2_module.build_sam2_model({"name": "sam2_effnet", "image_size": SIZE, "pretrained_trunk": False})
    assert isinstance(model, sam2_module.PromptedSAM2) and model.petseg_config["name"] == "sam2_effnet"
