"""The built-in image handlers on real (randomly initialized) torchvision models and real images."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from server.handlers.image_classifier import ImageClassifier
from server.handlers.object_detector import ObjectDetector
from server.handlers.service import HandlerService
from tests.server.handlers.conftest import batch, image_bytes, load_msg, make_model_dir, req

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit deprecation notices

RESNET_PY = """
    from torchvision.models.resnet import BasicBlock, ResNet


    class ResNet18(ResNet):
        def __init__(self):
            super().__init__(BasicBlock, [2, 2, 2, 2])
    """


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An eager-mode image_classifier model: model.py + a resnet18 state_dict + index_to_name.json."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    mapping = {str(i): [f"n{i:08d}", f"label_{i}"] for i in range(1000)}
    d = make_model_dir(
        tmp_path_factory.mktemp("resnet"),
        {"handler": "image_classifier", "serializedFile": "resnet18.pth", "modelFile": "model.py"},
        {"model.py": RESNET_PY, "index_to_name.json": json.dumps(mapping)},
    )
    torch.save(model.state_dict(), d / "resnet18.pth")
    return d


@pytest.fixture(scope="module")
def resnet_service(resnet_dir: Path) -> HandlerService:
    return HandlerService.load(load_msg(resnet_dir, "image_classifier"))


def expected_top5(service: HandlerService, image: bytes) -> dict[str, float]:
    handler = service.handler
    tensor = ImageClassifier.image_processing(Image.open(io.BytesIO(image))).unsqueeze(0)
    with torch.inference_mode():
        probs = torch.softmax(handler.model(tensor), dim=1)
    top = torch.topk(probs, 5, dim=1)
    return {f"label_{c}": p for c, p in zip(top.indices[0].tolist(), top.values[0].tolist(), strict=True)}


def test_image_classifier_one_jpeg(resnet_service: HandlerService, jpeg: bytes) -> None:
    reply = resnet_service.predict(batch(req("r", ("data", "image/jpeg", jpeg))))
    assert reply.code == 200, reply.message
    (response,) = reply.responses
    assert response.content_type == "" and response.status == 200
    result = json.loads(response.body)
    assert isinstance(result, dict) and len(result) == 5
    probs = list(result.values())
    assert probs == sorted(probs, reverse=True)
    assert all(label.startswith("label_") for label in result)  # the last element of each mapping list
    want = expected_top5(resnet_service, jpeg)
    assert list(result) == list(want)
    assert probs == pytest.approx(list(want.values()), abs=1e-5)
    assert response.body.startswith(b'{\n  "label_')  # pretty-printed like TorchServe


def test_image_classifier_batch_of_three_in_order(resnet_service: HandlerService) -> None:
    images = [image_bytes("JPEG", size, seed) for seed, size in enumerate([(300, 260), (256, 256), (400, 300)])]
    images[1] = image_bytes("PNG", (256, 256), 1)
    sent = batch(
        req("a", ("data", "image/jpeg", images[0])),
        req("b", ("body", "image/png", images[1])),
        req("c", ("body", "text/plain", base64.b64encode(images[2]))),  # a str is base64-decoded
    )
    reply = resnet_service.predict(sent)
    assert reply.code == 200, reply.message
    assert [r.request_id for r in reply.responses] == ["a", "b", "c"]
    for response, image in zip(reply.responses, images, strict=True):
        result = json.loads(response.body)
        want = expected_top5(resnet_service, image)
        assert list(result) == list(want)
        assert list(result.values()) == pytest.approx(list(want.values()), abs=1e-4)


def test_image_classifier_fewer_classes_than_topk_and_no_mapping(tmp_path: Path, jpeg: bytes) -> None:
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3)).eval()
    d = make_model_dir(tmp_path / "tiny", {"handler": "image_classifier", "serializedFile": "tiny.pt"})
    torch.jit.trace(model, torch.zeros(1, 3, 224, 224)).save(str(d / "tiny.pt"))
    service = HandlerService.load(load_msg(d, "image_classifier"))
    assert service.handler.mapping is None
    as_list = json.dumps(torch.zeros(3, 8, 8).tolist()).encode()  # a nested list becomes a float tensor
    replies = [
        service.predict(batch(req("a", ("data", "image/jpeg", jpeg)))),
        service.predict(batch(req("b", ("data", "application/json", as_list)))),
    ]
    assert [r.code for r in replies] == [200, 200], [r.message for r in replies]
    for response in (r.responses[0] for r in replies):
        result = json.loads(response.body)
        assert sorted(result) == ["0", "1", "2"]
        assert list(result.values()) == sorted(result.values(), reverse=True)
        assert sum(result.values()) == pytest.approx(1.0, abs=1e-5)


def test_limit_max_image_pixels_off_lifts_the_pil_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2)).eval()
    d = make_model_dir(tmp_path / "px", {"handler": "image_classifier", "serializedFile": "m.pt"})
    torch.jit.trace(model, torch.zeros(1, 2)).save(str(d / "m.pt"))
    HandlerService.load(load_msg(d, "image_classifier"))
    assert Image.MAX_IMAGE_PIXELS is not None
    HandlerService.load(load_msg(d, "image_classifier", limit_max_image_pixels=False))
    assert Image.MAX_IMAGE_PIXELS is None


def test_object_detector_on_a_detection_model(tmp_path: Path, jpeg: bytes) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5
    )
    d = make_model_dir(
        tmp_path / "det",
        {"handler": "object_detector", "serializedFile": "detector.pt"},
        {"index_to_name.json": json.dumps({"object_type_names": ["bg", "cat", "dog", "car", "tree"]})},
    )
    torch.save(model, d / "detector.pt")  # a whole pickled module, not TorchScript
    service = HandlerService.load(load_msg(d, "object_detector"))
    assert isinstance(service.handler, ObjectDetector)
    other = image_bytes("JPEG", (320, 240), seed=5)
    reply = service.predict(batch(req("a", ("data", "image/jpeg", jpeg)), req("b", ("data", "image/jpeg", other))))
    assert reply.code == 200, reply.message
    for response in reply.responses:
        objects = json.loads(response.body)
        assert isinstance(objects, list)  # random weights: usually empty
        for obj in objects:
            assert set(obj) - {"score"} <= {"bg", "cat", "dog", "car", "tree"} and obj["score"] >= 0.5


def test_object_detector_postprocess_format() -> None:
    handler = ObjectDetector()
    handler.mapping = {"1": "person"}
    output = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [0.0, 0.0, 1.0, 1.0]]),
            "labels": torch.tensor([1, 7, 1]),
            "scores": torch.tensor([0.9, 0.5, 0.49]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)},
    ]
    assert handler.postprocess(output) == [
        [{"person": [1.0, 2.0, 3.0, 4.0], "score": pytest.approx(0.9)}, {"7": [5.0, 6.0, 7.0, 8.0], "score": 0.5}],
        [],
    ]


def test_image_segmenter(tmp_path: Path, jpeg: bytes) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3
    )
    d = make_model_dir(tmp_path / "seg", {"handler": "image_segmenter", "serializedFile": "seg.pth"})
    torch.save(model, d / "seg.pth")
    service = HandlerService.load(load_msg(d, "image_segmenter"))
    reply = service.predict(batch(req("a", ("data", "image/jpeg", jpeg))))
    assert reply.code == 200, reply.message
    out = torch.tensor(json.loads(reply.responses[0].body))
    assert out.shape == (224, 224, 2)
    assert set(out[..., 0].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert bool(((out[..., 1] > 1 / 3 - 1e-6) & (out[..., 1] <= 1 + 1e-6)).all())  # a max of 3 probabilities
