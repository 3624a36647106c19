"""The bundled retrieval set where exact terms matter: complete, judged, and hard for the right reasons."""

from __future__ import annotations

import json
from collections import Counter

from freshvec.datafiles import product_set


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (product_set() / name).read_text().splitlines() if line.strip()]


def test_every_query_is_judged_against_products_that_exist() -> None:
    products, queries = _read("products.jsonl"), _read("queries.jsonl")
    skus = {p["sku"] for p in products}
    assert len(products) >= 100 and len(skus) == len(products)
    assert len(queries) >= 40 and len({q["id"] for q in queries}) == len(queries)
    assert all(q["relevant"] and set(q["relevant"]) <= skus for q in queries)
    assert Counter(q["kind"] for q in queries) == {"exact": 36, "descriptive": 48}


def test_products_come_in_look_alike_families() -> None:
    products = _read("products.jsonl")
    families = Counter(p["category"] for p in products)
    assert len(families) == 12 and set(families.values()) == {9}
    for product in products:  # the exact terms a query may name are in the searchable text
        assert product["sku"] in product["description"] and product["part_code"] in product["description"]


def test_exact_queries_name_a_code_and_descriptive_ones_do_not() -> None:
    products = {p["sku"]: p for p in _read("products.jsonl")}
    for query in _read("queries.jsonl"):
        [sku] = query["relevant"]
        named = sku in query["text"] or products[sku]["part_code"] in query["text"]
        assert named == (query["kind"] == "exact"), query
