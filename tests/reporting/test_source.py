"""petseg.reporting.source: the library's own code, shown in a chapter without a machine path."""

from __future__ import annotations

import inspect

from petseg.models.unet import UNet, UNetEncoder
from petseg.reporting.source import show_source, source_file, source_markdown
from petseg.training.losses import soft_dice_loss


def test_the_caption_names_the_object_and_its_repository_relative_file() -> None:
    text = source_markdown(UNetEncoder.forward)
    first_line = text.splitlines()[0]
    assert first_line == "`petseg/models/unet.py`: `UNetEncoder.forward`"
    assert "/work" not in text and "site-packages" not in text


def test_the_code_is_the_dedented_source_in_a_python_fence() -> None:
    text = source_markdown(UNet.forward, caption="the whole network")
    assert text.splitlines()[0].endswith("— the whole network")
    assert "```python\ndef forward(self, images" in text  # dedented: the method starts at column 0
    assert text.rstrip().endswith("```")
    assert inspect.getsource(soft_dice_loss).strip() in source_markdown(soft_dice_loss)


def test_files_outside_the_package_are_named_by_module_not_path() -> None:
    assert source_file(inspect) == "inspect"


def test_show_source_returns_markdown_that_renders_in_jupyter() -> None:
    shown = show_source(UNetEncoder)
    assert type(shown).__name__ == "Markdown"
    assert shown._repr_markdown_().startswith("`petseg/models/unet.py`: `UNetEncoder`")


def test_a_decorated_method_is_named_by_its_own_file() -> None:
    from petseg.evaluation.calibration import CalibrationMeter  # update is wrapped by @torch.no_grad()

    text = source_markdown(CalibrationMeter.update)
    assert text.splitlines()[0] == "`petseg/evaluation/calibration.py`: `CalibrationMeter.update`"
    assert "def update(self, probabilities" in text
