"""The demo's state and rules on tiny synthetic images and masks."""

from __future__ import annotations

import numpy as np
import pytest

from petseg.demo.overlay import BOX_COLOURS, POINT_COLOURS, render
from petseg.demo.session import (
    BACKGROUND,
    FOREGROUND,
    DemoInputError,
    PromptSession,
    box_colour,
    box_from_corners,
    check_click,
    classify_click,
    downscale_to_fit,
    image_key,
    load_upload,
)
from tests.demo.conftest import pet_like_image, write_image


def square_mask(height: int = 40, width: int = 60) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[10:30, 20:40] = True
    return mask


def test_click_without_mask_is_foreground() -> None:
    assert classify_click(None, 5, 5) == FOREGROUND
    assert classify_click(np.zeros((10, 10), bool), 5, 5) == FOREGROUND


def test_click_on_the_mask_is_background_and_off_it_foreground() -> None:
    mask = square_mask()
    assert classify_click(mask, 30, 20) == BACKGROUND  # deep inside the pet
    assert classify_click(mask, 5, 5) == FOREGROUND  # far outside
    # on the border the window is split: a window mostly outside counts as foreground
    assert classify_click(mask, 19, 20, radius=3) == FOREGROUND
    assert classify_click(mask, 22, 20, radius=3) == BACKGROUND


def test_click_window_is_clipped_at_the_image_edge() -> None:
    mask = np.ones((10, 10), bool)
    assert classify_click(mask, 0, 0) == BACKGROUND
    assert classify_click(mask, 9, 9) == BACKGROUND


@pytest.mark.parametrize("first, second", [((5, 7), (20, 30)), ((20, 30), (5, 7)), ((5, 30), (20, 7)),
                                           ((20, 7), (5, 30))])
def test_box_from_two_corners_in_any_order(first: tuple[int, int], second: tuple[int, int]) -> None:
    assert box_from_corners(first, second) == (5, 7, 20, 30)


@pytest.mark.parametrize("second", [(5, 9), (8, 7), (5, 7)])
def test_zero_area_box_is_refused(second: tuple[int, int]) -> None:
    with pytest.raises(DemoInputError, match="zero area"):
        box_from_corners((5, 7), second)


def test_box_colour_green_only_over_pet_pixels() -> None:
    mask = square_mask()
    assert box_colour(mask, (0, 0, 25, 15)) == "green"
    assert box_colour(mask, (0, 0, 10, 39)) == "blue"
    assert box_colour(mask, (40, 30, 59, 39)) == "blue"  # touches the square's corner only diagonally
    assert box_colour(mask, (39, 29, 59, 39)) == "green"  # inclusive corner pixel is pet
    assert box_colour(None, (0, 0, 5, 5)) == "blue"


@pytest.mark.parametrize("x, y", [(-1, 5), (60, 5), (5, 40), (float("nan"), 3), (3, float("inf")), ("a", 1)])
def test_clicks_outside_the_image_are_refused(x: object, y: object) -> None:
    with pytest.raises(DemoInputError):
        check_click(x, y, (40, 60, 3))


def test_check_click_truncates_to_pixels() -> None:
    assert check_click(59.9, 0.2, (40, 60, 3)) == (59, 0)


def test_session_prompts_and_reset() -> None:
    session = PromptSession()
    with pytest.raises(DemoInputError, match="upload an image first"):
        session.add_point(1, 1)
    with pytest.raises(DemoInputError, match="upload an image first"):
        session.add_box_corner(1, 1)
    session.set_image(pet_like_image(40, 60))
    assert session.add_point(30, 20) == FOREGROUND
    session.mask = square_mask()
    assert session.add_point(30, 20) == BACKGROUND  # auto: on the mask
    assert session.add_point(30, 20, "foreground") == FOREGROUND  # the explicit switch wins
    assert session.add_point(2, 2, "background") == BACKGROUND
    with pytest.raises(DemoInputError, match="label mode"):
        session.add_point(2, 2, "maybe")
    assert session.add_box_corner(50, 35) is None and session.pending_corner == (50, 35)
    assert session.add_box_corner(10, 5) == (10, 5, 50, 35) and session.pending_corner is None
    session.add_box_corner(1, 1)
    with pytest.raises(DemoInputError, match="zero area"):
        session.add_box_corner(1, 20)
    assert session.box == (10, 5, 50, 35) and session.pending_corner is None  # the bad box was discarded
    summary = session.summary()
    assert summary["points"] == [[30, 20]] * 3 + [[2, 2]] and summary["point_labels"] == [1, 0, 1, 0]
    assert summary["box_colour"] == "green" and summary["mask_pixels"] == 400
    session.reset()
    assert not session.has_prompts and session.mask is None and session.image is not None


def test_new_image_clears_prompts_and_changes_key() -> None:
    session = PromptSession()
    session.set_image(pet_like_image(40, 60))
    first = session.key
    session.add_point(3, 3)
    session.set_image(pet_like_image(41, 60))
    assert session.key != first and not session.points
    assert image_key(pet_like_image(40, 60)) == first  # same pixels, same key


def test_downscale_keeps_aspect_and_reports() -> None:
    image, note = downscale_to_fit(np.zeros((3000, 1500, 3), np.uint8), 1024)
    assert image.shape == (1024, 512, 3) and "3000" in note and "512x1024" in note
    same, note = downscale_to_fit(np.zeros((100, 50, 3), np.uint8), 1024)
    assert same.shape == (100, 50, 3) and note is None
    with pytest.raises(DemoInputError, match="at least"):
        downscale_to_fit(np.zeros((4, 50, 3), np.uint8))
    with pytest.raises(DemoInputError, match="RGB"):
        downscale_to_fit(np.zeros((40, 50), np.uint8))


def test_load_upload_decodes_converts_and_refuses(tmp_path) -> None:
    from PIL import Image

    path = write_image(tmp_path / "pet.png", pet_like_image(30, 40))
    image, notes = load_upload(path)
    assert image.shape == (30, 40, 3) and notes == []
    Image.fromarray(pet_like_image(30, 40)).convert("L").save(tmp_path / "grey.png")
    image, notes = load_upload(tmp_path / "grey.png")
    assert image.shape == (30, 40, 3) and any("RGB" in n for n in notes)
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(DemoInputError, match="not an image"):
        load_upload(tmp_path / "notes.txt")
    (tmp_path / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DemoInputError, match="fake.jpg"):
        load_upload(tmp_path / "fake.jpg")
    with pytest.raises(DemoInputError, match="no file"):
        load_upload(tmp_path / "missing.png")


def test_render_draws_mask_points_and_box_colour() -> None:
    session = PromptSession()
    assert render(session) is None
    image = np.full((40, 60, 3), 100, np.uint8)
    session.set_image(image)
    assert np.array_equal(render(session), image)
    session.mask = square_mask()
    session.points, session.point_labels = [(30, 20), (5, 35)], [FOREGROUND, BACKGROUND]
    session.box = (0, 0, 25, 15)
    picture = render(session)
    assert not np.array_equal(picture[15:25, 35:39], image[15:25, 35:39])  # mask tinted
    assert tuple(picture[20, 30]) == POINT_COLOURS[FOREGROUND]
    assert tuple(picture[35, 5]) == POINT_COLOURS[BACKGROUND]
    assert tuple(picture[8, 0]) == BOX_COLOURS["green"]
    session.box = (45, 30, 59, 39)
    assert tuple(render(session)[35, 59]) == BOX_COLOURS["blue"]


def test_interior_pixel_is_the_centre_of_a_square_and_stays_inside() -> None:
    from petseg.demo.session import interior_pixel

    assert interior_pixel(square_mask()) in {(29, 19), (30, 20), (29, 20), (30, 19)}
    ring = np.zeros((50, 50), bool)
    ring[5:45, 5:45] = True
    ring[15:35, 15:35] = False  # a hole: the centre of mass is not on the mask
    x, y = interior_pixel(ring)
    assert ring[y, x]
    edge = np.zeros((20, 20), bool)
    edge[:, :6] = True  # touching the image edge: the edge is a border too
    assert interior_pixel(edge)[0] in (2, 3)
    with pytest.raises(ValueError, match="empty"):
        interior_pixel(np.zeros((5, 5), bool))


def test_decompression_bombs_are_refused_before_decoding(tmp_path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)  # claims 900 megapixels, RGB
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(DemoInputError, match="bomb.png.*not an image this app can read"):
        load_upload(bomb)


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.75, 1.0])
def test_blend_gives_the_pixels_of_float_arithmetic(alpha: float) -> None:
    from petseg.demo.overlay import PET_COLOUR, blend

    rng = np.random.default_rng(int(alpha * 100))
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    where = rng.random((37, 53)) < 0.4
    for colour in (PET_COLOUR, (0, 255, 7)):
        reference = image.astype(np.float32)
        reference[where] = (1 - alpha) * reference[where] + alpha * np.asarray(colour, np.float32)
        assert np.array_equal(blend(image, where, colour, alpha), reference.round().clip(0, 255).astype(np.uint8))
    assert np.array_equal(blend(image, np.zeros((37, 53), bool), PET_COLOUR), image)
    assert np.array_equal(blend(image[:, ::2], where[:, ::2], PET_COLOUR)[where[:, ::2]],
                          blend(image, where, PET_COLOUR)[:, ::2][where[:, ::2]])  # strided views too
