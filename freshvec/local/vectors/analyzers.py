"""Text analyzers of the local S3 Vectors stand-in: text -> the terms BM25 scores.

S3 Vectors analyzes a full-text searchable key with the standard analyzer, or with a language analyzer when
its ``textSearchConfigurations`` entry names one of ten languages (docs "Configuring full-text search",
``TextSearchConfiguration.language``). The service does not publish its analyzers' rules, so these are
stand-ins built from well-kept parts:

- standard: Unicode word tokens, lowercased; no stemming, no stop words;
- en, fr, es, pt, it, de, nl: the same tokens, the language's stop words (bm25s' lists) dropped, and the
  Snowball stemmer of the language (PyStemmer);
- zh, ja, ko: runs of Han, Kana or Hangul become overlapping two-character terms (a single character stays
  itself), as CJK analyzers do where no dictionary segmenter is at hand; other tokens as standard, and for
  zh and ko bm25s' stop words.

A word with digits and letters (``XR-2250``) is split at the hyphen like the standard tokenizers split it
(``xr``, ``2250``); a query for the code matches both terms, in order or not. Where results can differ from the
service: stemming details, stop-word lists, CJK segmentation and anything else its analyzers do.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

import bm25s.stopwords as stopword_lists
import Stemmer

from freshvec.constants import S3V_TEXT_LANGUAGES

STANDARD = "standard"  # no language given: the service's default analyzer
LANGUAGES = S3V_TEXT_LANGUAGES  # the LanguageCode enum

_SNOWBALL = {
    "en": "english",
    "fr": "french",
    "es": "spanish",
    "pt": "portuguese",
    "it": "italian",
    "de": "german",
    "nl": "dutch",
}
_STOPWORDS = {
    "en": stopword_lists.STOPWORDS_EN,
    "fr": stopword_lists.STOPWORDS_FRENCH,
    "es": stopword_lists.STOPWORDS_SPANISH,
    "pt": stopword_lists.STOPWORDS_PORTUGUESE,
    "it": stopword_lists.STOPWORDS_ITALIAN,
    "de": stopword_lists.STOPWORDS_GERMAN,
    "nl": stopword_lists.STOPWORDS_DUTCH,
    "zh": stopword_lists.STOPWORDS_CHINESE,
    "ko": stopword_lists.STOPWORDS_KOREAN,
}
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]+")

Analyzer = Callable[[str], list[str]]


def analyzer(language: str | None) -> Analyzer:
    """The analyzer for a ``TextSearchConfiguration.language`` (None: the standard analyzer)."""
    name = language or STANDARD
    if name != STANDARD and name not in LANGUAGES:
        raise ValueError(f"unknown analyzer language {language!r}; one of {', '.join(LANGUAGES)}")
    return _build(name)


@functools.cache
def _build(language: str) -> Analyzer:
    stop = frozenset(_STOPWORDS.get(language, ()))
    stemmer = Stemmer.Stemmer(_SNOWBALL[language]) if language in _SNOWBALL else None
    split_cjk = language in ("zh", "ja", "ko")

    def analyze(text: str) -> list[str]:
        terms: list[str] = []
        for token in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower()):
            if split_cjk and _CJK_RUN.fullmatch(token):
                terms.extend(_bigrams(token))
            elif token not in stop:
                terms.append(token)
        terms = [t for t in terms if t not in stop]
        return stemmer.stemWords(terms) if stemmer is not None else terms

    return analyze


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]
