"""Orphan scans page through digests: ascending, strictly after a cursor, one shard listed at a time."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelport.storage.local import LocalArtifactStore


def filled(root: Path, count: int) -> tuple[LocalArtifactStore, list[str]]:
    store = LocalArtifactStore(root)
    digests = []
    for i in range(count):
        data = f"blob {i}".encode()
        src = root.parent / f"src-{i}"
        src.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        store.put(src, sha)
        digests.append(sha)
    return store, sorted(digests)


def test_pages_follow_each_other_in_ascending_order(tmp_path: Path) -> None:
    store, expected = filled(tmp_path / "s", 40)
    assert len({d[:2] for d in expected}) > 5  # the pages really cross shard directories
    pages, after = [], None
    while page := store.digests(after, 7):
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [d for p in pages for d in p] == expected
    assert store.digests(expected[-1], 7) == []


def test_after_is_exclusive_and_need_not_be_a_stored_digest(tmp_path: Path) -> None:
    store, expected = filled(tmp_path / "s", 20)
    assert store.digests(expected[4], 3) == expected[5:8]
    assert store.digests(None, 3) == expected[:3]
    middle = "8" + "0" * 63  # no blob has this name
    assert store.digests(middle, 100) == [d for d in expected if d > middle]
    assert store.digests(expected[-1][:2], 100) == [d for d in expected if d > expected[-1][:2]]
    assert store.digests("f" * 64) == []
    with pytest.raises(ValueError):
        store.digests(None, 0)


def test_an_empty_store_has_no_pages(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "s")
    assert store.digests() == []
    assert store.digests("0" * 64, 1) == []


def test_temp_files_and_strays_are_not_digests(tmp_path: Path) -> None:
    store, expected = filled(tmp_path / "s", 3)
    shard = tmp_path / "s" / "sha256" / expected[0][:2]
    (shard / ".tmp-abc").write_bytes(b"half")
    (tmp_path / "s" / "sha256" / "notes.txt").write_text("x")
    misplaced = "0" * 64 if not expected[0].startswith("00") else "1" * 64
    (shard / misplaced).write_bytes(b"in the wrong shard: fetch could never find it")
    assert store.digests() == expected


def test_a_page_lists_only_the_shards_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, expected = filled(tmp_path / "s", 40)
    listed: list[str] = []
    real = os.listdir

    def counting(path: str | os.PathLike[str]) -> list[str]:
        listed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)  # the store lists directories with os.listdir
    assert store.digests(None, 1) == expected[:1]
    assert listed == ["sha256", expected[0][:2]]  # the shard index, then the first shard only
    listed.clear()
    assert store.digests(expected[-2], 1) == expected[-1:]
    # the cursor's own shard and the next one only: earlier shards are skipped by name, not listed
    assert listed == ["sha256", *sorted({expected[-2][:2], expected[-1][:2]})]


def test_deleting_while_paging_skips_nothing(tmp_path: Path) -> None:
    store, expected = filled(tmp_path / "s", 25)
    seen: list[str] = []
    after = None
    while page := store.digests(after, 4):
        seen.extend(page)
        for sha in page:  # what an orphan scan does between pages: the cursor is a name, not an offset
            store.delete(sha)
        after = page[-1]
    assert seen == expected
    assert store.digests() == []
