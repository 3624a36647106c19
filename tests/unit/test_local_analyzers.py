"""The local stand-in's text analyzers: the standard one, stemming with stop words, CJK bigrams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.constants import S3V_TEXT_LANGUAGES
from freshvec.local.vectors.analyzers import analyzer


def test_the_standard_analyzer_lowercases_and_splits_words_without_stemming() -> None:
    assert analyzer(None)("The Running SHOES, model XR-2250!") == ["the", "running", "shoes", "model", "xr", "2250"]


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "The running shoes", ["run", "shoe"]),
        ("de", "Die schnellen Laufschuhe", ["schnell", "laufschuh"]),
        ("fr", "Les vélos électriques", ["vélos", "électr"]),
        ("es", "Las zapatillas rápidas", ["zapatill", "rap"]),
        ("nl", "De snelle fietsen", ["snel", "fiets"]),
    ],
)
def test_language_analyzers_drop_stop_words_and_stem(language: str, text: str, expected: list[str]) -> None:
    assert analyzer(language)(text) == expected


def test_cjk_runs_become_overlapping_bigrams() -> None:
    assert analyzer("ja")("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert analyzer("zh")("猫") == ["猫"]
    assert "rx" in analyzer("ko")("서울 RX-100")


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown analyzer language 'xx'"):
        analyzer("xx")


@given(st.text(max_size=200), st.sampled_from([None, *S3V_TEXT_LANGUAGES]))
def test_every_analyzer_gives_lowercase_terms_for_any_text(text: str, language: str | None) -> None:
    terms = analyzer(language)(text)
    assert all(term and term == term.lower() for term in terms)
