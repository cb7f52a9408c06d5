"""HandlerService.load: model forms, entry point resolution (spec §6.1), load failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from server.handlers.base_handler import BaseHandler
from server.handlers.image_classifier import ImageClassifier
from server.handlers.service import HandlerService, LoadError, split_handler
from tests.server.handlers.conftest import TINY_NET, batch, load_msg, make_model_dir, req
from tests.server.handlers.tiny_models import TinyNet

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit deprecation notices

X = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def expected(model: torch.nn.Module) -> list[list[float]]:
    with torch.inference_mode():
        return model(torch.tensor(X)).tolist()


def predict_rows(service: HandlerService) -> list[list[float]]:
    """Two requests through the ``body`` envelope and BaseHandler's default steps."""
    reply = service.predict(
        batch(*(req(f"r{i}", ("body", "application/json", json.dumps(row).encode())) for i, row in enumerate(X)))
    )
    assert reply.code == 200, reply.message
    return [json.loads(r.body) for r in reply.responses]


def assert_close(got: list[list[float]], want: list[list[float]]) -> None:
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-6)


# -- model forms --------------------------------------------------------------------------------------


def test_eager_model_file_and_state_dict(tmp_path: Path) -> None:
    model = tiny_net()
    d = make_model_dir(
        tmp_path / "eager",
        {"handler": "base_handler", "serializedFile": "weights.pth", "modelFile": "model.py"},
        {"model.py": TINY_NET},
    )
    torch.save(model.state_dict(), d / "weights.pth")
    service = HandlerService.load(load_msg(d, "base_handler", envelope="body"))
    handler = service.handler
    assert isinstance(handler, BaseHandler) and handler.initialized
    assert handler.device == torch.device("cpu")
    assert not handler.model.training
    assert_close(predict_rows(service), expected(model))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path: Path, how: str) -> None:
    model = tiny_net().eval()
    scripted = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.tensor(X))
    d = make_model_dir(tmp_path / how, {"handler": "base_handler", "serializedFile": "model.pt"})
    scripted.save(str(d / "model.pt"))
    assert_close(predict_rows(HandlerService.load(load_msg(d, "base_handler", envelope="body"))), expected(model))


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_whole_module_saved_with_torch_save(tmp_path: Path, suffix: str) -> None:
    """A pickled nn.Module whose class lives in a .py of the archive (not named as modelFile)."""
    d = make_model_dir(tmp_path / f"whole{suffix[1:]}", {"handler": "base_handler", "serializedFile": f"model{suffix}"})
    (d / "tiny_whole_net.py").write_text(TINY_NET)
    sys.path.insert(0, str(d))
    from tiny_whole_net import TinyNet  # type: ignore[import-not-found]

    torch.manual_seed(1)
    model = TinyNet()
    torch.save(model, d / f"model{suffix}")
    del sys.modules["tiny_whole_net"]  # the worker must import it itself
    sys.path.remove(str(d))
    assert_close(predict_rows(HandlerService.load(load_msg(d, "base_handler", envelope="body"))), expected(model))


def test_state_dict_without_model_file_is_a_clear_load_error(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "sd", {"handler": "base_handler", "serializedFile": "model.pt"})
    torch.save(tiny_net().state_dict(), d / "model.pt")
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "base_handler"))
    assert err.value.code == 500
    assert "state_dict" in err.value.message and "--model-file" in err.value.message


def test_no_weights_at_all(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "none", {"handler": "base_handler"})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "base_handler"))
    assert (err.value.code, err.value.message) == (500, "RuntimeError: No model weights could be loaded")


def test_model_file_with_two_classes(tmp_path: Path) -> None:
    two = TINY_NET + "\n\nclass Other:\n    pass\n"
    d = make_model_dir(tmp_path / "two", {"handler": "base_handler", "modelFile": "model.py"}, {"model.py": two})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "base_handler"))
    assert err.value.code == 500 and "Expected only one class" in err.value.message


def test_a_real_mar_built_by_our_archiver(tmp_path: Path) -> None:
    from archiver import ModelArchiveConfig, build_model_archive, extract_archive

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.py").write_text(TINY_NET)
    model = tiny_net()
    torch.save(model.state_dict(), src / "tiny.pth")
    (src / "model-config.yaml").write_text("batchSize: 2\nhandler:\n  threshold: 0.25\n")
    (src / "index_to_name.json").write_text(json.dumps({"0": "zero", "1": ["n01", "one"]}))
    mar = build_model_archive(
        ModelArchiveConfig(
            model_name="tiny",
            handler="base_handler",
            version="1.0",
            serialized_file=str(src / "tiny.pth"),
            model_file=str(src / "model.py"),
            extra_files=str(src / "index_to_name.json"),
            config_file=str(src / "model-config.yaml"),
            export_path=str(tmp_path),
        )
    )
    extract_archive(mar, tmp_path / "unpacked")
    service = HandlerService.load(load_msg(tmp_path / "unpacked", "base_handler", model_name="tiny", envelope="body"))
    ctx = service.context
    assert ctx.manifest is not None and ctx.manifest["model"]["modelName"] == "tiny"
    assert ctx.model_yaml_config == {"batchSize": 2, "handler": {"threshold": 0.25}}
    assert ctx.system_properties == {
        "model_dir": str((tmp_path / "unpacked").resolve()),
        "gpu_id": None,
        "batch_size": 4,
        "server_name": "MMS",
        "server_version": "0.12.0",
        "limit_max_image_pixels": True,
    }
    handler = service.handler
    assert handler.mapping == {"0": "zero", "1": "one"}
    assert_close(predict_rows(service), expected(model))


# -- entry points ---------------------------------------------------------------------------------------

FUNCTION_HANDLER = """
    CALLS = []


    def handle(data, context):
        CALLS.append(("handle", data, context.model_name))
        if data is None:
            return None
        return [{"n": len(data)} for _ in data]


    def custom(data, context):
        CALLS.append(("custom", data, context.model_name))
        if data is None:
            return None
        return ["custom" for _ in data]
    """


@pytest.mark.parametrize(
    ("handler", "expected_body"),
    [
        ("fn_handler", {"n": 1}),
        ("fn_handler.py", {"n": 1}),
        ("some/dir/fn_handler.py", {"n": 1}),
        ("fn_handler:custom", "custom"),
        ("/abs/path/fn_handler.py:custom", "custom"),
    ],
)
def test_function_entry_point(tmp_path: Path, handler: str, expected_body: object) -> None:
    d = make_model_dir(tmp_path / "fn", None, {"fn_handler.py": FUNCTION_HANDLER})  # no manifest at all
    service = HandlerService.load(load_msg(d, handler))
    module = sys.modules["fn_handler"]
    fn_name = handler.partition(":")[2] or "handle"
    assert [(fn_name, None, "m")] == module.CALLS  # initialized once with data=None
    assert service.context.manifest is None and service.context.model_yaml_config == {}
    reply = service.predict(batch(req("a", ("body", "text/plain", b"x"))))
    assert reply.code == 200
    body = reply.responses[0].body
    assert (json.loads(body) if expected_body != "custom" else body.decode()) == expected_body


def test_split_handler() -> None:
    assert split_handler("a/b/c.py:fn") == ("c", "fn")
    assert split_handler("image_classifier") == ("image_classifier", None)
    assert split_handler("x.py") == ("x", None)


CLASS_HANDLER = """
    from collections import OrderedDict  # an imported class does not count
    from server.handlers.base_handler import BaseHandler


    class Only(BaseHandler):
        def initialize(self, context):
            self.ctx = context
            self.initialized = True

        def handle(self, data, context):
            return [OrderedDict(who=type(self).__name__, model=context.model_name) for _ in data]
    """


def test_class_entry_point_counts_only_classes_defined_in_the_module(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "cls", {"handler": "cls_handler.py"}, {"cls_handler.py": CLASS_HANDLER})
    service = HandlerService.load(load_msg(d, ""))  # empty handler in Load: the manifest's is used
    reply = service.predict(batch(req("a", ("body", "", b""))))
    assert json.loads(reply.responses[0].body) == {"who": "Only", "model": "m"}


def test_two_classes_and_no_function_is_a_load_error(tmp_path: Path) -> None:
    code = "class A:\n    pass\n\n\nclass B:\n    pass\n"
    d = make_model_dir(tmp_path / "two", None, {"two_classes.py": code})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "two_classes"))
    assert err.value.code == 500 and "only one class" in err.value.message


def test_builtin_fallback(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    model(torch.zeros(1, 3, 224, 224))
    d = make_model_dir(tmp_path / "builtin", {"handler": "image_classifier", "serializedFile": "m.pt"})
    torch.jit.trace(model.eval(), torch.zeros(1, 3, 224, 224)).save(str(d / "m.pt"))
    service = HandlerService.load(load_msg(d, "image_classifier"))
    assert isinstance(service.handler, ImageClassifier)


def test_unknown_module(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "unknown", None)
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "no_such_handler_module"))
    assert err.value.code == 500 and "no_such_handler_module" in err.value.message


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(tmp_path / "gone", "base_handler"))
    assert err.value.code == 500 and "Model directory not found" in err.value.message


def test_invalid_manifest(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "badmanifest", None, {"fn_handler.py": FUNCTION_HANDLER})
    (d / "MAR-INF").mkdir()
    (d / "MAR-INF" / "MANIFEST.json").write_text("{broken")
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "fn_handler"))
    assert err.value.code == 500 and "MANIFEST.json" in err.value.message


def test_handler_with_a_missing_dependency_names_it(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "dep", None, {"needs_dep.py": "import surely_not_installed_pkg\n"})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "needs_dep"))
    assert err.value.code == 500 and "surely_not_installed_pkg" in err.value.message


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        ("MemoryError()", 507, "System out of memory"),
        ("RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')", 507, "System out of memory"),
        ("ValueError('bad config value')", 500, "ValueError: bad config value"),
    ],
)
def test_initialize_failures(tmp_path: Path, raised: str, code: int, message: str) -> None:
    src = f"def handle(data, context):\n    if data is None:\n        raise {raised}\n    return data\n"
    d = make_model_dir(tmp_path / "fail", None, {"failing.py": src})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "failing"))
    assert (err.value.code, err.value.message) == (code, message)


@pytest.mark.parametrize("envelope", ["nonsense", "kservev3"])
def test_unknown_envelopes_are_refused(tmp_path: Path, envelope: str) -> None:
    d = make_model_dir(tmp_path / "env", None, {"fn_handler.py": FUNCTION_HANDLER})
    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "fn_handler", envelope=envelope))
    assert err.value.code == 500 and envelope in err.value.message


def test_gpu_id_and_image_pixel_limit_reach_the_context(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "gpu", None, {"fn_handler.py": FUNCTION_HANDLER})
    props = HandlerService.load(load_msg(d, "fn_handler", gpu_id=1, limit_max_image_pixels=False)).context
    assert props.system_properties["gpu_id"] == 1
    assert props.system_properties["limit_max_image_pixels"] is False
    assert HandlerService.load(load_msg(d, "fn_handler", gpu_id=-1)).context.system_properties["gpu_id"] is None


def test_torch_threads_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_model_dir(tmp_path / "threads", None, {"fn_handler.py": FUNCTION_HANDLER})
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("TSC_TORCH_THREADS", "1")
        HandlerService.load(load_msg(d, "fn_handler"))
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("TSC_TORCH_THREADS", "lots")
        with pytest.raises(LoadError, match="TSC_TORCH_THREADS"):
            HandlerService.load(load_msg(d, "fn_handler"))
    finally:
        torch.set_num_threads(before)


def test_same_module_name_in_two_model_dirs(tmp_path: Path) -> None:
    """A long-lived process loading a second model with a same-named handler gets the new module."""
    first = make_model_dir(tmp_path / "one", None, {"h.py": "def handle(d, c):\n    return d and ['one']\n"})
    second = make_model_dir(tmp_path / "two", None, {"h.py": "def handle(d, c):\n    return d and ['two']\n"})
    for d, want in ((first, b"one"), (second, b"two")):
        reply = HandlerService.load(load_msg(d, "h")).predict(batch(req("a", ("body", "", b""))))
        assert reply.responses[0].body == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_worker_uses_its_cuda_device(tmp_path: Path) -> None:
    model = tiny_net()
    d = make_model_dir(
        tmp_path / "gpu",
        {"handler": "base_handler", "serializedFile": "weights.pth", "modelFile": "model.py"},
        {"model.py": TINY_NET},
    )
    torch.save(model.state_dict(), d / "weights.pth")
    service = HandlerService.load(load_msg(d, "base_handler", gpu_id=0, envelope="body"))
    assert service.handler.device == torch.device("cuda:0")
    assert next(service.handler.model.parameters()).device == torch.device("cuda:0")
    assert_close(predict_rows(service), expected(model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_out_of_memory_in_a_handler_is_507(tmp_path: Path) -> None:
    src = (
        "import torch\n\n\ndef handle(data, context):\n"
        "    if data is not None:\n        torch.empty(1 << 50, device='cuda:0')\n"
    )
    d = make_model_dir(tmp_path / "oom", None, {"oom_handler.py": src})
    reply = HandlerService.load(load_msg(d, "oom_handler", gpu_id=0)).predict(batch(req("a", ("body", "", b""))))
    assert (reply.code, reply.message) == (507, "Out of resources")
