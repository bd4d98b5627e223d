"""The app's behaviour without Gradio: a fake SAM 2 whose mask is known makes the click rules checkable."""

from __future__ import annotations

import numpy as np
import pytest

from petseg.demo.app import DemoController
from petseg.demo.engines import Timing
from petseg.demo.models import ModelOption
from petseg.demo.session import PromptSession
from tests.demo.conftest import pet_like_image, write_image


class SquareSAM:
    """Answers every prompt with the same square mask (rows 30-89, columns 40-119); counts embeddings."""

    kind = "prompted"

    def __init__(self) -> None:
        self.embedded: list[str] = []
        self.prompts: list[tuple] = []

    def embed(self, image: np.ndarray, key: str) -> Timing:
        cached = key in self.embedded
        self.embedded.append(key)
        return Timing(0.0 if cached else 0.5, cached=cached)

    def predict(self, image, key, points, labels, box):
        self.prompts.append((list(points), list(labels), box))
        mask = np.zeros(image.shape[:2], bool)
        mask[30:90, 40:120] = True
        return mask, Timing(0.01)


@pytest.fixture
def controller() -> tuple[DemoController, SquareSAM]:
    sam = SquareSAM()
    option = ModelOption("fake", "fake SAM", "prompted", lambda: sam, "a fake")
    return DemoController([option]), sam


def test_auto_labels_sample_the_current_mask(controller, tmp_path) -> None:
    demo, sam = controller
    reply, session = demo.upload(str(write_image(tmp_path / "p.png", pet_like_image())), "fake", None)
    assert reply.details["embedding_cached"] is False
    reply, session = demo.click(80, 60, "point", "auto", "fake", session)  # no mask yet: foreground
    assert reply.details["point_labels"] == [1]
    reply, session = demo.click(70, 50, "point", "auto", "fake", session)  # inside the square: background
    reply, session = demo.click(5, 5, "point", "auto", "fake", session)  # outside: foreground
    reply, session = demo.click(39, 29, "point", "auto", "fake", session)  # at the corner, window mostly outside
    assert reply.details["point_labels"] == [1, 0, 1, 1]
    assert sam.prompts[-1][1] == [1, 0, 1, 1] and sam.prompts[-1][2] is None
    reply, session = demo.click(70, 50, "point", "foreground", "fake", session)  # the switch overrides
    assert reply.details["point_labels"][-1] == 1
    assert sam.embedded.count(session.key) == 1  # clicks never re-embed


def test_box_colour_follows_the_mask_and_prompts_reach_the_model(controller, tmp_path) -> None:
    demo, sam = controller
    _, session = demo.upload(str(write_image(tmp_path / "p.png", pet_like_image())), "fake", None)
    reply, session = demo.click(150, 110, "box", "auto", "fake", session)
    assert reply.picture is not None and "opposite corner" in reply.message and not sam.prompts
    reply, session = demo.click(100, 70, "box", "auto", "fake", session)
    assert sam.prompts[-1][2] == (100, 70, 150, 110) and reply.details["box_colour"] == "green"
    reply, session = demo.click(130, 100, "box", "auto", "fake", session)
    reply, session = demo.click(159, 119, "box", "auto", "fake", session)  # clear of the square
    assert reply.details["box"] == [130, 100, 159, 119] and reply.details["box_colour"] == "blue"
    assert "The box is blue" in reply.message


def test_bad_mode_and_switching_models_reset_prompts(controller, tmp_path) -> None:
    demo, _ = controller
    _, session = demo.upload(str(write_image(tmp_path / "p.png", pet_like_image())), "fake", None)
    reply, session = demo.click(10, 10, "lasso", "auto", "fake", session)
    assert "mode must be one of" in reply.message
    _, session = demo.click(10, 10, "point", "auto", "fake", session)
    reply, session = demo.set_model("fake", session)
    assert reply.details["points"] == [] and "fake SAM" in reply.message
    reply, _ = demo.set_model("other", session)
    assert "unknown model" in reply.message


def test_handlers_accept_a_missing_session(controller) -> None:
    demo, _ = controller
    reply, session = demo.click(1, 1, "point", "auto", None, None)
    assert isinstance(session, PromptSession) and "upload an image first" in reply.message
    reply, _ = demo.upload(None, None, None)
    assert "no file" in reply.message


def test_a_controller_needs_models() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DemoController([])


def test_a_model_that_fails_to_load_is_a_message(tmp_path) -> None:
    def broken() -> None:
        raise FileNotFoundError("best.pt vanished")

    demo = DemoController([ModelOption("gone", "gone SAM", "prompted", broken, "")])
    reply, session = demo.upload(str(write_image(tmp_path / "p.png", pet_like_image())), "gone", None)
    assert "cannot load the model gone SAM" in reply.message and "vanished" in reply.message
    reply, _ = demo.click(5, 5, "point", "auto", "gone", session)
    assert "cannot load" in reply.message
