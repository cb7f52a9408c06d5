"""The text classifier (no torchtext): cleanup pipeline, vocabulary lookup, one-request batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from server.handlers.service import HandlerService
from server.handlers.text_classifier import TextClassifier
from server.handlers.text_utils import VocabLookup, get_tokenizer, ngrams_iterator
from tests.server.handlers.conftest import batch, load_msg, make_model_dir, req

TEXT_MODEL = """
    import torch


    class TextNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.EmbeddingBag(32, 8, mode="mean")
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, text, offsets):
            return self.fc(self.embedding(text, offsets))
    """

WORDS = ["<unk>", "i", "do", "not", "like", "cafes", "i do", "do not", "not like", "like cafes", "good"]
VOCAB = {w: i for i, w in enumerate(WORDS)}
LABELS = {"0": "World", "1": "Sports", "2": "Business", "3": "Sci/Tec"}


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_model_dir(
        tmp_path_factory.mktemp("text"),
        {"handler": "text_classifier", "serializedFile": "text.pth", "modelFile": "model.py"},
        {"model.py": TEXT_MODEL, "index_to_name.json": json.dumps(LABELS)},
    )
    import sys

    sys.path.insert(0, str(d))
    from model import TextNet  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.save(TextNet().state_dict(), d / "text.pth")
    torch.save(VOCAB, d / "source_vocab.pt")
    sys.path.remove(str(d))
    del sys.modules["model"]
    return d


def test_text_classifier_end_to_end(text_dir: Path) -> None:
    service = HandlerService.load(load_msg(text_dir, "text_classifier"))
    handler = service.handler
    assert isinstance(handler, TextClassifier)
    tensor, tokens = handler.preprocess([{"data": "<b>I don't LIKE caf\u00e9s!</b> &amp; zebras".encode()}])
    assert tokens == ["i", "do", "not", "like", "cafes", "zebras"]
    unigrams = [VOCAB.get(t, 0) for t in tokens]
    bigrams = [VOCAB["i do"], VOCAB["do not"], VOCAB["not like"], VOCAB["like cafes"], 0, 0]
    assert tensor.tolist() == unigrams + bigrams[: len(tokens) - 1]

    reply = service.predict(batch(req("a", ("body", "text/plain", b"Good, I do not like cafes."))))
    assert reply.code == 200, reply.message
    result = json.loads(reply.responses[0].body)
    assert list(result) == list(LABELS.values())  # all classes, in class order
    assert sum(result.values()) == pytest.approx(1.0, abs=1e-5)


def test_text_classifier_does_not_batch(text_dir: Path) -> None:
    service = HandlerService.load(load_msg(text_dir, "text_classifier"))
    reply = service.predict(batch(req("a", ("body", "text/plain", b"good")), req("b", ("body", "text/plain", b"i"))))
    assert (reply.code, reply.message) == (503, "number of batch response mismatched")


def test_missing_vocab_is_a_load_error(tmp_path: Path) -> None:
    d = make_model_dir(
        tmp_path / "novocab",
        {"handler": "text_classifier", "modelFile": "model.py"},
        {"model.py": TEXT_MODEL},
    )
    from server.handlers.service import LoadError

    with pytest.raises(LoadError) as err:
        HandlerService.load(load_msg(d, "text_classifier"))
    assert err.value.code == 500 and "source_vocab" in err.value.message


def test_cleanup_steps() -> None:
    handler = TextClassifier()
    assert handler._remove_html_tags("a <i>b</i> &nbsp;c &#169;") == "a b c "
    assert handler._expand_contractions("I'm sure they'll say we can't, won't they") == (
        "I am sure they will say we cannot, will not they"
    )
    assert handler._expand_contractions("rock 'n' roll") == "rock n roll"
    assert handler._remove_accented_characters("cr\u00e8me br\u00fbl\u00e9e") == "creme brulee"
    assert handler._remove_punctuation("a.b,c!d?(e)") == "abcde"
    assert handler._remove_puncutation("x;y") == "xy"


def test_tokenizer_and_ngrams() -> None:
    tokenize = get_tokenizer("basic_english")
    assert tokenize("You can now install TorchText using pip!") == [
        "you", "can", "now", "install", "torchtext", "using", "pip", "!",
    ]  # fmt: skip
    assert tokenize('He said: "fine"; ok.<br />Next') == ["he", "said", "fine", "ok", ".", "next"]
    assert get_tokenizer(None)("a  b") == ["a", "b"]
    assert list(ngrams_iterator(["here", "we", "are"], 2)) == ["here", "we", "are", "here we", "we are"]
    assert list(ngrams_iterator(["a", "b", "c"], 3)) == ["a", "b", "c", "a b", "b c", "a b c"]


def test_vocab_lookup_forms() -> None:
    plain = VocabLookup({"<unk>": 3, "a": 1})
    assert (plain["a"], plain["zzz"], len(plain)) == (1, 3, 2)
    assert VocabLookup({"a": 1})["zzz"] == 0

    class StoiVocab:
        def get_stoi(self) -> dict[str, int]:
            return {"a": 5}

        def get_default_index(self) -> int:
            return 9

    stoi = VocabLookup(StoiVocab())
    assert (stoi["a"], stoi["b"]) == (5, 9)
    assert stoi.get_stoi() == {"a": 5}  # other attributes reach the wrapped vocab

    class Indexable:
        def __getitem__(self, token: str) -> int:
            return len(token)

    assert VocabLookup(Indexable())["abcd"] == 4
    with pytest.raises(TypeError):
        VocabLookup(42)
