"""POST /infer on the real app with the real MTCNN graph, checked against the mtcnn package."""

from __future__ import annotations

import io

import aiohttp
import numpy as np
import pytest
from PIL import Image

from tests import photos
from tests.reference import iou, reference_faces

pytestmark = pytest.mark.integration


def _form(data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image_file", data, filename="photo.jpg", content_type="image/jpeg")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


def _assert_matches_reference(result: dict, rgb: np.ndarray) -> None:
    expected = reference_faces(rgb)
    assert len(expected) >= 1
    ours = [d["box"] for d in result["detections"]]
    for face in expected:
        best = max(range(len(ours)), key=lambda i: iou(face["box"], ours[i]))
        assert iou(face["box"], ours[best]) >= 0.9, (face, ours)
        points = result["detections"][best]["landmarks"]
        names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        for (x, y), name in zip(points, names, strict=True):
            ref_x, ref_y = face["keypoints"][name]
            assert abs(x - ref_x) < 2 and abs(y - ref_y) < 2, (name, (x, y), (ref_x, ref_y))
    assert len(ours) == len(expected)


async def test_multipart_json_matches_reference(mtcnn_client) -> None:
    data = photos.grace_hopper_jpeg()
    response = await mtcnn_client.post("/infer", data=_form(data, detection_threshold="20"))
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["model"] == "mtcnn" and result["task"] == "face-detection"
    assert result["image"] == {"width": 512, "height": 600}
    face = result["detections"][0]
    assert len(face["landmarks"]) == 5 and 0.9 < face["score"] <= 1.0
    _assert_matches_reference(result, photos.decode_rgb(data))


async def test_raw_body_matches_reference(mtcnn_client) -> None:
    rgb = photos.astronaut()
    response = await mtcnn_client.post(
        "/infer", data=photos.encode_jpeg(rgb), headers={"Content-Type": "image/jpeg"}
    )
    assert response.status == 200, await response.text()
    # The reference sees the same decoded pixels that the server decoded.
    _assert_matches_reference(await response.json(), photos.decode_rgb(photos.encode_jpeg(rgb)))


async def test_exif_orientation_is_applied(mtcnn_client) -> None:
    data = photos.exif_rotated_jpeg()
    upright = photos.load_rgb_upright(data)
    response = await mtcnn_client.post("/infer", data=_form(data))
    result = await response.json()
    assert result["image"] == {"width": upright.shape[1], "height": upright.shape[0]}
    _assert_matches_reference(result, upright)


async def test_faceless_photo_gives_no_detection(mtcnn_client) -> None:
    response = await mtcnn_client.post("/infer", data=_form(photos.encode_jpeg(photos.coffee())))
    assert (await response.json())["detections"] == []


async def test_smallest_face_option_filters_small_faces(mtcnn_client) -> None:
    data = photos.encode_jpeg(photos.composite())
    small = await (await mtcnn_client.post("/infer", data=_form(data))).json()
    large = await (
        await mtcnn_client.post("/infer", data=_form(data, detection_threshold="200"))
    ).json()
    assert len(small["detections"]) > len(large["detections"]) >= 1
    assert all(d["box"][3] - d["box"][1] >= 150 for d in large["detections"])


@pytest.mark.parametrize("how", ["query", "accept"])
async def test_png_has_green_boxes_on_the_reference_faces(mtcnn_client, how: str) -> None:
    data = photos.grace_hopper_jpeg()
    if how == "query":
        response = await mtcnn_client.post("/infer?format=png", data=_form(data))
    else:
        response = await mtcnn_client.post(
            "/infer", data=_form(data), headers={"Accept": "image/png"}
        )
    assert response.status == 200
    assert response.content_type == "image/png"
    png = np.asarray(Image.open(io.BytesIO(await response.read())).convert("RGB"))
    assert png.shape == (600, 512, 3)
    green = (png[..., 0] < 40) & (png[..., 1] > 215) & (png[..., 2] < 40)
    for face in reference_faces(photos.decode_rgb(data)):
        x1, y1, x2, y2 = (round(v) for v in face["box"])
        margin = max(4, round(0.06 * (x2 - x1)))
        mid_y, mid_x = (y1 + y2) // 2, (x1 + x2) // 2
        for window in (
            green[mid_y, x1 - margin : x1 + margin],  # left edge
            green[mid_y, x2 - margin : x2 + margin],  # right edge
            green[y1 - margin : y1 + margin, mid_x],  # top edge
            green[y2 - margin : y2 + margin, mid_x],  # bottom edge
        ):
            assert window.any(), "no green box edge near the reference box"
    # Away from the boxes the photo is untouched: hardly any pure green elsewhere.
    assert green.mean() < 0.02
