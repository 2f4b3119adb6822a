"""The LRU cache of per-image results (methods/cache.py)."""

from semcorr.methods.cache import LRUCache


def test_get_many_computes_the_misses_together_and_stores_named_keys_only():
    cache: LRUCache[str] = LRUCache(2)
    calls = []

    def compute(missing):
        calls.append(list(missing))
        return [f"v{i}" for i in missing]

    assert cache.get_many(["a", None, "b"], compute) == ["v0", "v1", "v2"]
    assert cache.get_many(["b", "a", None], compute) == ["v2", "v0", "v2"]  # only the unnamed one recomputed
    assert calls == [[0, 1, 2], [2]]
    assert len(cache) == 2


def test_capacity_evicts_the_least_recently_used_and_zero_disables():
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    off: LRUCache[int] = LRUCache(0)
    assert off.get_many(["a"], lambda missing: [7]) == [7] and off.get("a") is None
