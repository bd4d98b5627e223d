"""CUDA checks (``-m gpu``; deselected by default, skipped without a CUDA device): mixed-precision training
and evaluation on the GPU give the same kind of result as on the CPU. scripts/gpu/ runs them remotely."""

from __future__ import annotations

import math

import pytest
import torch

from petseg.training.checkpoints import load_checkpoint
from petseg.training.config import TrainConfig
from petseg.training.loop import train

from .test_loop import SyntheticPets, make_model, quick_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
def test_mixed_precision_training_on_cuda_learns_and_checkpoints(amp_dtype: str, tmp_path) -> None:
    train_set, val_set = SyntheticPets(48, size=32, seed=0), SyntheticPets(16, size=32, seed=1)
    config: TrainConfig = quick_config(epochs=6, device="cuda", amp=True, amp_dtype=amp_dtype)
    result = train(make_model(), train_set, val_set, config, tmp_path)
    losses = [record["train_loss"] for record in result["history"]]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert result["history"][-1]["val_miou"] > 0.5
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["global_step"] == result["total_steps"]
    assert bool(checkpoint["scaler"]) == (amp_dtype == "float16")  # loss scaling only for float16


def test_cuda_and_cpu_forward_agree_in_float32() -> None:
    model = make_model().eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        cpu = model(images)
        cuda = model.cuda()(images.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-3, atol=1e-3)
