"""The model store: resolving registration urls (spec §5.5) and unpacking archives safely."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from archiver import ModelArchiveConfig, build_model_archive
from archiver.reader import default_model_name as default_name
from server.errors import InternalServerError, InvalidModel, ModelNotFound
from server.models.store import ModelStore, file_name


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    root = tmp_path / "store"
    root.mkdir()
    (tmp_path / "h.py").write_text("def handle(data, context):\n    return data\n")
    build_model_archive(
        ModelArchiveConfig(model_name="m", handler=str(tmp_path / "h.py"), version="1", export_path=str(root))
    )
    return ModelStore(root, tmp_path / "work")


def test_urls_resolve_like_torchserve(store: ModelStore) -> None:
    assert file_name("https://host/path/m.mar?x=1") == "m.mar"
    assert default_name("my-model.v2.tar.gz") == "my_model_v2"
    assert store.locate("m.mar") == store.root / "m.mar"
    assert store.locate("/some/where/else/m.mar") == store.root / "m.mar"  # an absolute file: its name, in the store
    with pytest.raises(ModelNotFound, match="Relative path is not allowed"):
        store.locate("../m.mar")
    with pytest.raises(ModelNotFound, match=r"Model not found at: x\.mar"):
        store.locate("x.mar")


def test_allowed_urls(store: ModelStore) -> None:
    only_one_host = "https://models.example.com/.*"
    with pytest.raises(ModelNotFound, match=r"Given URL http://127.0.0.1/x.mar does not match any allowed URL\(s\)"):
        asyncio.run(store.fetch("http://127.0.0.1/x.mar", only_one_host))
    with pytest.raises(InternalServerError, match=r"Model file already exists m\.mar"):
        asyncio.run(store.fetch("HTTPS://MODELS.EXAMPLE.COM/m.mar", only_one_host))  # case-insensitive, full match
    assert asyncio.run(store.fetch("m.mar", only_one_host)) == (store.root / "m.mar", False)


def test_unpacking_refuses_a_hostile_archive_and_cleans_up(store: ModelStore) -> None:
    (store.root / "evil.mar").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(InvalidModel, match=r"evil\.mar"):
        asyncio.run(store.unpack(store.root / "evil.mar"))
    models = store.work_dir / "models"
    assert not models.exists() or not any(models.iterdir())
    info = asyncio.run(store.unpack(store.root / "m.mar"))
    assert (info.path / "h.py").exists() and info.path.parent == models
    asyncio.run(store.discard(info, store.root / "m.mar"))
    assert not info.path.exists()
