"""The index settings CloudFormation cannot set: the index mode and its full-text searchable keys.

``aws_s3vectors.CfnIndex`` (aws-cdk-lib 2.275) has no property for either, so the stack's index settings resource
(``stacks/index_settings.py`` -> ``lambdas/index_settings``) calls ``apply_index_settings`` on every create and
update, and ``remove_text_search`` on delete. Both are idempotent: they read the index (GetIndex) and change
only what differs, so a retried or repeated call does nothing more.

Order (docs "Changing a vector index's mode", "Configuring full-text search", UpdateMetadataConfiguration):
full-text search needs ENHANCED, so the mode is switched first; a key whose analyzer language changes is
deleted and added again; UpdateMetadataConfiguration takes either ``add`` or ``delete`` in one call. Then it
waits while a key's analyzer is BUILDING (backfilling what is already stored), up to ``deadline_s``, and
reports ``ACTIVE`` or ``BUILDING``: a large index keeps building after the deploy, which `freshvec status`
and `freshvec preflight` show per key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from freshvec.ports import IndexInfo

ACTIVE, BUILDING = "ACTIVE", "BUILDING"


class IndexSettingsStore(Protocol):
    def describe(self) -> IndexInfo: ...
    def update_index_mode(self, mode: str) -> None: ...
    def add_text_search(self, keys: Mapping[str, str | None]) -> None: ...
    def delete_text_search(self, keys: list[str]) -> None: ...


def apply_index_settings(
    store: IndexSettingsStore,
    mode: str,
    text_keys: Mapping[str, str | None],
    *,
    deadline_s: float = 600.0,
    poll_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Bring the index to ``mode`` with exactly ``text_keys`` (key -> language, None: standard) full-text
    searchable; ``ACTIVE`` once every analyzer serves queries, ``BUILDING`` if one still builds at the deadline."""
    started = clock()
    info = store.describe()
    current = {key: language for key, language, _ in info.text_search}
    stale = [key for key, language in current.items() if text_keys.get(key, "\0") != language]
    if stale:
        store.delete_text_search(stale)  # before a switch to CLASSIC, and before a key is added again
    if info.index_mode != mode:
        store.update_index_mode(mode)
    missing = {key: language for key, language in text_keys.items() if key not in current or key in stale}
    if missing:
        store.add_text_search(missing)
    while True:
        statuses = {key: status for key, _, status in store.describe().text_search if key in text_keys}
        if all(statuses.get(key) == ACTIVE for key in text_keys):
            return ACTIVE
        if clock() - started + poll_s > deadline_s:
            return BUILDING
        sleep(poll_s)


def remove_text_search(store: IndexSettingsStore) -> None:
    """On delete: the index's full-text searchable keys go (the index and its vectors stay)."""
    keys = [key for key, _, _ in store.describe().text_search]
    if keys:
        store.delete_text_search(keys)
