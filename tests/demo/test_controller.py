"""The app's behaviour without Gradio: a fake SAM 2 whose mask is known makes the click rules checkable."""

from __future__ import annotations

import copy
import queue
import threading
import time

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


class GatedSAM(SquareSAM):
    """A SquareSAM whose ``predict`` reports each entry and then waits for ``gate`` (or a barrier)."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        super().__init__()
        self.barrier = barrier
        self.entered: queue.Queue[tuple] = queue.Queue()
        self.gate = threading.Event()

    def predict(self, image, key, points, labels, box):
        self.entered.put(tuple(points[-1]))
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError (timeout) unless another click is inside too
        else:
            self.gate.wait(timeout=10)
        return super().predict(image, key, points, labels, box)


def gated_controller(sam: GatedSAM, tmp_path, sessions: int) -> tuple[DemoController, list[PromptSession]]:
    demo = DemoController([ModelOption("fake", "fake SAM", "prompted", lambda: sam, "a fake")])
    path = str(write_image(tmp_path / "p.png", pet_like_image()))
    return demo, [demo.upload(path, "fake", None)[1] for _ in range(sessions)]


def click_in_thread(demo: DemoController, session: PromptSession, x: int, results: list) -> threading.Thread:
    def run() -> None:
        try:
            results.append(demo.click(x, 60, "point", "foreground", "fake", session)[0])
        except Exception as error:  # noqa: BLE001 - reported by the test
            results.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_two_sessions_click_at_the_same_time(tmp_path) -> None:
    sam = GatedSAM(threading.Barrier(2, timeout=5))  # both clicks must be inside predict together
    demo, (first, second) = gated_controller(sam, tmp_path, 2)
    results: list = []
    threads = [click_in_thread(demo, session, x, results) for session, x in ((first, 10), (second, 20))]
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 2 and not any(isinstance(r, Exception) for r in results), results
    assert first.points == [(10, 60)] and second.points == [(20, 60)]
    assert demo._session_locks == {}  # nothing left behind once the clicks are answered


def test_one_sessions_clicks_run_one_at_a_time(tmp_path) -> None:
    sam = GatedSAM()
    demo, (session,) = gated_controller(sam, tmp_path, 1)
    results: list = []
    threads = [click_in_thread(demo, session, 10, results)]
    assert sam.entered.get(timeout=5) == (10, 60)  # the first click is inside the model call
    threads.append(click_in_thread(demo, session, 20, results))
    time.sleep(0.2)
    assert sam.entered.empty() and len(demo._session_locks) == 1  # the second waits for the first
    assert demo._session_locks[session.uid].holders == 2
    sam.gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert sam.entered.get(timeout=5) == (20, 60)
    assert len(results) == 2 and not any(isinstance(r, Exception) for r in results), results
    assert session.points == [(10, 60), (20, 60)] and [p for p, _, _ in sam.prompts] == [[(10, 60)], session.points]
    assert demo._session_locks == {}


def test_the_lock_table_holds_only_sessions_in_flight(tmp_path) -> None:
    sam = GatedSAM()
    sam.gate.set()
    demo, sessions = gated_controller(sam, tmp_path, 20)
    results: list = []
    for round_ in range(3):
        threads = [click_in_thread(demo, session, 10 + round_, results) for session in sessions]
        for thread in threads:
            thread.join(timeout=10)
        assert demo._session_locks == {}
    assert len(results) == 60 and not any(isinstance(r, Exception) for r in results)
    demo.reset("fake", sessions[0])
    demo.set_model("fake", sessions[1])
    assert demo._session_locks == {}


def test_a_copied_session_is_the_same_user() -> None:
    session = PromptSession()
    assert copy.deepcopy(session).uid == session.uid and PromptSession().uid != session.uid


def test_each_browser_session_gets_its_own_session_object() -> None:
    import gradio as gr

    from petseg.demo.app import build_app

    app = build_app([ModelOption("fake", "fake SAM", "prompted", SquareSAM, "a fake")])
    (state,) = [block for block in app.blocks.values() if isinstance(block, gr.State)]
    assert callable(state.value)  # Gradio calls it per session (a plain value is copied, uid and all)
    assert state.value().uid != state.value().uid
