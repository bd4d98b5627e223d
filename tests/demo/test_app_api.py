"""The app through its HTTP API (gradio_client), served on 127.0.0.1 by the ``demo_server`` fixture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.demo.conftest import TINY_RUN, pet_like_image, write_image

SAM2_KEY = "sam2:random"
UNET_KEY = f"run:{TINY_RUN}"


@pytest.fixture
def client(demo_server: str):
    from gradio_client import Client

    return Client(demo_server, verbose=False)  # a new client is a new browser session (fresh state)


def upload(client, path: Path, model: str = SAM2_KEY) -> tuple:
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), model, api_name="/upload")


def click(client, x: float, y: float, mode: str = "point", label: str = "auto", model: str = SAM2_KEY) -> tuple:
    return client.predict(x, y, mode, label, model, api_name="/click")


def digest(picture_path: str) -> str:
    return hashlib.sha1(np.asarray(Image.open(picture_path).convert("RGB")).tobytes()).hexdigest()


def test_server_binds_to_localhost(demo_server: str) -> None:
    assert demo_server.startswith("http://127.0.0.1:")


def test_api_endpoints(client) -> None:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/upload", "/click", "/reset", "/set_model"} <= set(endpoints)


def test_upload_then_clicks_update_the_overlay(client, tmp_path: Path) -> None:
    picture, message, details = upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    assert "160x120 loaded" in message and details["image"] == {"width": 160, "height": 120,
                                                                 "key": details["image"]["key"]}
    assert details["random_weights"] and "random weights" in message
    assert details["embedding_cached"] is False and details["embedding_seconds"] > 0
    before = digest(picture)
    picture, message, details = click(client, 80, 60)
    assert details["points"] == [[80, 60]] and details["point_labels"] == [1]
    assert details["mask_pixels"] is not None and details["predict_seconds"] >= 0
    after = digest(picture)
    assert after != before  # at least the point marker is drawn
    # auto labels sample the mask around the click: on the mask -> background, off it -> foreground
    mask_pixels = details["mask_pixels"]
    picture, _, details = click(client, 5, 5, label="foreground")
    assert details["point_labels"] == [1, 1] and digest(picture) != after
    _, _, details = click(client, 150, 110, label="background")
    assert details["point_labels"][-1] == 0 and mask_pixels is not None


def test_box_from_two_clicks_in_either_order_and_colour(client, tmp_path: Path) -> None:
    upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    _, message, details = click(client, 140, 100, mode="box")
    assert "opposite corner" in message and details["pending_corner"] == [140, 100] and details["box"] is None
    _, message, details = click(client, 20, 10, mode="box")
    assert details["box"] == [20, 10, 140, 100] and details["pending_corner"] is None
    expected = "green" if details["mask_pixels"] else "blue"  # the mask lies inside the box here
    assert details["box_colour"] == expected and f"The box is {expected}" in message


def test_zero_area_box_is_refused_and_the_app_continues(client, tmp_path: Path) -> None:
    upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    click(client, 30, 30, mode="box")
    _, message, details = click(client, 30, 90, mode="box")
    assert "zero area" in message and details["box"] is None and details["pending_corner"] is None
    _, _, details = click(client, 80, 60)
    assert details["points"] == [[80, 60]]


def test_reset_clears_prompts_and_keeps_the_embedding(client, tmp_path: Path) -> None:
    path = write_image(tmp_path / "pet.png", pet_like_image())
    original, _, _ = upload(client, path)
    click(client, 80, 60)
    picture, message, details = client.predict(SAM2_KEY, api_name="/reset")
    assert "cleared" in message and details["points"] == [] and details["mask_pixels"] is None
    assert digest(picture) == digest(original)
    _, _, details = upload(client, path)  # same pixels again: the embedding comes from the cache
    assert details["embedding_cached"] is True


def test_full_image_model_needs_no_prompts(client, tmp_path: Path) -> None:
    upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    picture, message, details, note = client.predict(UNET_KEY, api_name="/set_model")
    assert "UNet from scratch" in message and "no prompts" in note
    assert sum(details["class_pixels"].values()) == 160 * 120
    _, message, details = click(client, 80, 60, model=UNET_KEY)
    assert "segments the whole image" in message and details["points"] == []


@pytest.mark.parametrize("x, y", [(160, 50), (-1, 5), (10, 120), (1e9, 1e9)])
def test_clicks_outside_the_image_are_refused(client, tmp_path: Path, x: float, y: float) -> None:
    upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    _, message, details = click(client, x, y)
    assert "outside the image" in message and details["points"] == []


def test_prompts_before_any_image(client) -> None:
    picture, message, details = click(client, 10, 10)
    assert picture is None and "upload an image first" in message
    _, message, _ = client.predict(SAM2_KEY, api_name="/reset")
    assert "upload an image first" in message


def test_non_image_files_are_refused(client, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(AppError, match="Invalid file type"):  # refused by the upload box's file types
        upload(client, text)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    picture, message, details = upload(client, fake)  # an image name, not an image: our own check
    assert picture is None and "not an image this app can read" in message
    _, message, _ = click(client, 5, 5)
    assert "upload an image first" in message  # and the app is still answering


def test_huge_images_are_downscaled(client, tmp_path: Path) -> None:
    path = write_image(tmp_path / "huge.png", pet_like_image(2400, 3200))
    picture, message, details = upload(client, path)
    assert details["image"]["width"] == 1024 and details["image"]["height"] == 768
    assert "downscaled from 3200x2400" in message
    assert Image.open(picture).size == (1024, 768)


def test_unknown_model_is_refused(client, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with pytest.raises(AppError, match="not in the list of choices"):
        upload(client, write_image(tmp_path / "pet.png", pet_like_image()), model="nope")
    log = capfd.readouterr().err
    assert "Traceback" not in log and "refused a request" in log  # the server's log: one line, no traceback
    _, message, _ = upload(client, write_image(tmp_path / "pet.png", pet_like_image()))
    assert "loaded" in message


def test_latency_measurement_through_the_api(demo_server: str, tmp_path: Path) -> None:
    from petseg.demo.latency import click_grid, latency_summary, measure_latency

    assert click_grid(160, 120, 3) == click_grid(160, 120, 3) and len(click_grid(160, 120, 5)) == 5
    assert all(32 <= x < 128 and 24 <= y < 96 for x, y in click_grid(160, 120, 20))
    image = write_image(tmp_path / "fresh.png", pet_like_image(100, 140))  # not embedded by other tests
    result = measure_latency(demo_server, image, SAM2_KEY, clicks=3)
    assert result["embedding_was_cached"] and result["server_embedding_seconds"] > 0
    assert len(result["click_round_trip_seconds"]) == len(result["server_predict_seconds"]) == 3
    assert all(r >= s for r, s in zip(result["click_round_trip_seconds"], result["server_predict_seconds"],
                                      strict=True))  # a round trip includes the model call
    assert result["gradio_client_click_median_ms"] > 0 and result["click_p95_ms"] >= result["click_median_ms"]
    summary = latency_summary(result)
    assert summary["table"].shape == (5, 2) and "100 ms aim" in summary["text"]


def test_concurrent_users_click_directly_each_in_their_own_session(demo_server: str, tmp_path: Path) -> None:
    from petseg.demo.latency import measure_concurrent_clicks

    image = write_image(tmp_path / "shared.png", pet_like_image(120, 100))
    result = measure_concurrent_clicks(demo_server, image, SAM2_KEY, users=2, clicks=2)
    assert result["users"] == 2 and len(result["click_round_trip_seconds"]) == 4
    assert 0 < result["click_median_ms"] <= result["click_p95_ms"]


def test_click_pauses_are_seeded_per_user_and_within_half_to_one_and_a_half_times() -> None:
    from petseg.demo.latency import click_pauses

    pauses = click_pauses(users=3, clicks=50, pause_seconds=0.4, seed=7)
    assert len(pauses) == 3 and all(len(p) == 50 for p in pauses)
    assert all(0.2 <= value <= 0.6 for p in pauses for value in p)
    assert not np.allclose(pauses[0], pauses[1])  # users do not click in step
    assert all(np.array_equal(a, b) for a, b in zip(pauses, click_pauses(3, 50, 0.4, seed=7), strict=True))
    assert all(not p.any() for p in click_pauses(2, 5, 0.0))
    with pytest.raises(ValueError, match="pause_seconds"):
        click_pauses(1, 1, -1)


def test_concurrent_users_with_pauses_click_independently(demo_server: str, tmp_path: Path) -> None:
    from petseg.demo.latency import click_pauses, measure_concurrent_clicks

    image = write_image(tmp_path / "paused.png", pet_like_image(120, 100))
    result = measure_concurrent_clicks(demo_server, image, SAM2_KEY, users=2, clicks=2, pause_seconds=0.4)
    assert result["pause_seconds"] == 0.4 and len(result["click_round_trip_seconds"]) == 4
    # the click phase lasts at least as long as the longest user's pauses (each user waits before each click)
    assert result["click_phase_seconds"] >= max(p.sum() for p in click_pauses(2, 2, 0.4))
    with pytest.raises(ValueError, match="pause_seconds"):
        measure_concurrent_clicks(demo_server, image, SAM2_KEY, users=1, clicks=1, pause_seconds=-1)
