"""English contractions and their expansions, used by the text handlers before punctuation is removed."""

from __future__ import annotations

_MODALS = {
    "ca": "can",
    "could": "could",
    "do": "do",
    "does": "does",
    "did": "did",
    "has": "has",
    "have": "have",
    "had": "had",
    "is": "is",
    "are": "are",
    "was": "was",
    "were": "were",
    "should": "should",
    "would": "would",
    "must": "must",
    "might": "might",
    "need": "need",
    "sha": "shall",
    "wo": "will",
    "ai": "is",
    "may": "may",
    "ought": "ought",
    "dare": "dare",
}

_PRONOUNS = [
    "i",
    "you",
    "he",
    "she",
    "it",
    "we",
    "they",
    "that",
    "there",
    "here",
    "who",
    "what",
    "where",
    "when",
    "why",
    "how",
    "this",
    "let",
]


def _build() -> dict[str, str]:
    table: dict[str, str] = {}
    # negations: "don't" -> "do not", "can't" -> "cannot", "won't" -> "will not", ...
    for stem, verb in _MODALS.items():
        table[f"{stem}n't"] = f"{verb} not"
        table[f"{stem}n't've"] = f"{verb} not have"
    table["can't"] = "cannot"
    table["can't've"] = "cannot have"
    table["ain't"] = "is not"
    # pronoun + auxiliary: "i'm", "you're", "he's", "we'll", "they'd", "i've", ...
    for who in _PRONOUNS:
        table[f"{who}'ll"] = f"{who} will"
        table[f"{who}'ll've"] = f"{who} will have"
        table[f"{who}'d"] = f"{who} would"
        table[f"{who}'d've"] = f"{who} would have"
        table[f"{who}'ve"] = f"{who} have"
        table[f"{who}'re"] = f"{who} are"
        table[f"{who}'s"] = f"{who} is"
    table["i'm"] = "i am"
    table["i'm'a"] = "i am about to"
    table["let's"] = "let us"
    table["how'd'y"] = "how do you"
    table["y'all"] = "you all"
    table["y'all'd"] = "you all would"
    table["y'all're"] = "you all are"
    table["y'all've"] = "you all have"
    table["'cause"] = "because"
    table["o'clock"] = "of the clock"
    table["ma'am"] = "madam"
    table["could've"] = "could have"
    table["should've"] = "should have"
    table["would've"] = "would have"
    table["might've"] = "might have"
    table["must've"] = "must have"
    table["so've"] = "so have"
    table["so's"] = "so is"
    return table


CONTRACTION_MAP: dict[str, str] = _build()
"""Lower-case contraction → expansion."""
