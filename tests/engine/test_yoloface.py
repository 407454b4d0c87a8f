"""The official detector's wrapper: TorchScript call convention, NMS, and boxes scaled back to the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicModelError
from comfyui_sonic.nodes.engine.yoloface import YoloFaceAnalyzer, decode_detections, find_model, nms

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class FakeYolo(torch.nn.Module):
    """Same call signature as yoloface_v5m.pt: (image [1,3,h,w], grids) -> [1, N, 16] rows.

    It 'detects' one face in the centre quarter of whatever it is given (twice, overlapping,
    so NMS has something to remove) and one weak candidate that the threshold drops.
    It also checks the grids it receives, so the test fails if they are built wrong.
    """

    def forward(self, x: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        assert len(grids) == 3
        assert grids[0].shape[2] == h // 8 and grids[0].shape[3] == w // 8 and grids[2].shape[4] == 2
        assert h % 32 == 0 and w % 32 == 0 and min(h, w) >= 416
        rows = torch.zeros(1, 3, 16)
        rows[0, 0, :5] = torch.tensor([w / 2.0, h / 2.0, w / 4.0, h / 4.0, 0.9])
        rows[0, 1, :5] = torch.tensor([w / 2.0 + 2.0, h / 2.0, w / 4.0, h / 4.0, 0.8])
        rows[0, 2, :5] = torch.tensor([10.0, 10.0, 20.0, 20.0, 0.3])
        rows[0, :, 15] = 1.0
        return rows


@pytest.fixture
def fake_model_file(tmp_path):
    path = tmp_path / "yoloface_v5m.pt"
    torch.jit.script(FakeYolo()).save(str(path))
    return path


def test_boxes_come_back_in_photo_coordinates(fake_model_file):
    analyzer = YoloFaceAnalyzer(fake_model_file, device="cpu", landmarker=object())
    boxes = analyzer.detect(np.zeros((300, 500, 3), np.uint8))
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert (x0, y0, x1, y1) == pytest.approx((187, 112, 312, 188), abs=2)


def test_find_model_looks_in_the_sonic_folders(fake_model_file, tmp_path):
    assert find_model([tmp_path / "elsewhere", tmp_path]) == fake_model_file
    assert find_model([tmp_path / "elsewhere"]) is None


def test_a_file_that_is_not_torchscript_is_a_model_error(tmp_path):
    bad = tmp_path / "yoloface_v5m.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(SonicModelError, match="yoloface_v5m.pt"):
        YoloFaceAnalyzer(bad, device="cpu")


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    assert list(nms(boxes, np.array([0.6, 0.9, 0.7]), 0.45)) == [1, 2]


def test_rows_below_the_confidence_threshold_are_dropped():
    rows = np.zeros((2, 16), np.float32)
    rows[:, :4] = [50, 50, 20, 20]
    rows[:, 4] = [0.9, 0.9]
    rows[:, 15] = [0.4, 0.9]  # class score x objectness: 0.36 (dropped) and 0.81 (kept)
    assert decode_detections(rows).tolist() == [[40, 40, 60, 60]]


def test_prepare_uses_the_official_detector_when_its_file_is_there(fake_model_file, tmp_path):
    from comfyui_sonic.nodes.engine.prepare import prepare
    from comfyui_sonic.nodes.engine.types import Audio

    speech = Audio(samples=np.zeros((1, 8000), np.float32), sample_rate=16000)
    image = np.full((256, 320, 3), 128, np.uint8)
    data = prepare(image, speech, min_resolution=256, detector="yoloface", model_dirs=[tmp_path])
    assert data.detector == "yoloface-v5m"
    # The fake finds (120, 96, 200, 160); expanded 0.5x per side -> 160 x 128, squared to 128 about the face.
    assert data.crop_box == (96, 64, 224, 192)
    assert data.landmarks.shape == (68, 2)
