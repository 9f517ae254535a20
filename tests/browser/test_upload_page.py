"""The upload page in a real headless Chromium: choose a photo, see the faces boxed."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import photos
from tests.reference import reference_faces

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_upload_a_photo_and_see_green_boxes(browser, mtcnn_server, tmp_path: Path) -> None:
    photo = tmp_path / "grace_hopper.jpg"
    photo.write_bytes(photos.grace_hopper_jpeg())
    page = browser.new_page(viewport={"width": 1100, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(mtcnn_server.url + "/")
    assert "mtcnn" in page.title()
    page.set_input_files("#image_file", str(photo))
    page.fill("input[name=detection_threshold]", "20")
    page.click("#submit")
    page.wait_for_selector("canvas#result:not([hidden])", timeout=60_000)
    assert page.inner_text("#status").startswith("1 face in a 512×600 image")
    assert page.locator("#detections tbody tr").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True)
    # Read the canvas back at its own resolution and look for the green box edges.
    canvas = tmp_path / "canvas.png"
    page.locator("canvas#result").screenshot(path=str(canvas))
    shown = np.asarray(Image.open(canvas).convert("RGB").resize((512, 600)))
    green = (shown[..., 0] < 60) & (shown[..., 1] > 200) & (shown[..., 2] < 60)
    (face,) = reference_faces(photos.grace_hopper())
    x1, y1, x2, y2 = (round(v) for v in face["box"])
    margin = max(6, round(0.08 * (x2 - x1)))
    assert green[(y1 + y2) // 2, x1 - margin : x1 + margin].any()
    assert green[y1 - margin : y1 + margin, (x1 + x2) // 2].any()
    assert not errors


def test_a_bad_upload_shows_the_server_reason(browser, mtcnn_server, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not really a photo")
    page = browser.new_page()
    page.goto(mtcnn_server.url + "/")
    page.set_input_files("#image_file", str(bogus))
    page.click("#submit")
    page.wait_for_selector("#status.error", timeout=60_000)
    assert "not a supported image" in page.inner_text("#status")


def test_a_photo_dropped_on_the_page_runs_at_once(browser, mtcnn_server) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(mtcnn_server.url + "/")
    # What the browser hands the page when a file is dragged in from the desktop.
    dropped = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            return transfer;
        }""",
        ["grace_hopper.jpg", base64.b64encode(photos.grace_hopper_jpeg()).decode()],
    )
    page.dispatch_event("body", "dragover", {"dataTransfer": dropped})
    assert "dropping" in (page.get_attribute("#upload", "class") or "")
    page.dispatch_event("body", "drop", {"dataTransfer": dropped})
    page.wait_for_selector("canvas#result:not([hidden])", timeout=60_000)
    assert page.inner_text("#status").startswith("1 face in a 512×600 image")
    assert "dropping" not in (page.get_attribute("#upload", "class") or "")
    assert page.eval_on_selector("#image_file", "input => input.files[0].name") == (
        "grace_hopper.jpg"
    )
    assert not errors
