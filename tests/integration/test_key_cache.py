"""The API key cache: a key in use is looked up again before its entry expires, once, off the
request; a revoked key stops working within ``api_key_cache_seconds``."""

from __future__ import annotations

import threading

import pytest

from huiyuan.services import principals
from huiyuan.services.principals import KeyResolver, Scope


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keyed(make_services):
    svc = make_services(api_key_cache_seconds=30)
    key = principals.create_api_key(svc, "platform", (Scope.WRITE,), "shop", actor="test")
    ticks = Ticks()
    resolver = KeyResolver(svc, clock=ticks)
    yield svc, key, resolver, ticks
    resolver.close()


def _settle(resolver: KeyResolver) -> None:
    """Wait for a refresh handed to the resolver's thread to finish."""
    if resolver._refresher is not None:
        resolver._refresher.submit(lambda: None).result(timeout=10)


def test_a_fresh_entry_is_answered_from_memory(keyed):
    _, key, resolver, ticks = keyed
    first = resolver.resolve(key.key)
    assert first is not None and first.owner_id == "platform"
    ticks.now += 14.9  # within the first half of the entry's life
    for _ in range(50):
        assert resolver.cached(key.key) == first
    _settle(resolver)
    assert resolver.lookups == 1


def test_past_half_its_life_a_key_is_looked_up_again_once_while_its_hits_go_on(keyed):
    _, key, resolver, ticks = keyed
    first = resolver.resolve(key.key)
    ticks.now += 20  # past half of the 30 s, not expired
    gate = threading.Event()
    lookup = resolver._lookup

    def slow(presented: str, digest: str):
        gate.wait(10)
        return lookup(presented, digest)

    resolver._lookup = slow  # type: ignore[method-assign]
    # while the lookup runs, every hit is answered from memory at once
    answers = [resolver.cached(key.key) for _ in range(100)]
    assert answers == [first] * 100
    gate.set()
    _settle(resolver)
    assert resolver.lookups == 2  # one lookup, not one per request
    # and the entry lives on from the lookup's time
    ticks.now += 29
    assert resolver.cached(key.key) == first
    _settle(resolver)


def test_a_key_revoked_meanwhile_is_forgotten_at_its_refresh(keyed):
    svc, key, resolver, ticks = keyed
    assert resolver.resolve(key.key) is not None
    principals.revoke_api_key(svc, key.prefix, actor="test")
    ticks.now += 16
    assert resolver.cached(key.key) is not None  # the hit that hands the lookup off
    _settle(resolver)
    assert resolver.cached(key.key) is None
    assert resolver.resolve(key.key) is None


def test_an_idle_key_past_its_life_is_looked_up_before_it_is_trusted(keyed):
    svc, key, resolver, ticks = keyed
    assert resolver.resolve(key.key) is not None
    principals.revoke_api_key(svc, key.prefix, actor="test")
    ticks.now += 30  # nobody used it in its second half: no refresh ran
    assert resolver.cached(key.key) is None
    assert resolver.resolve(key.key) is None


def test_a_failed_refresh_leaves_the_entry_to_its_expiry_and_tries_again(keyed):
    _, key, resolver, ticks = keyed
    first = resolver.resolve(key.key)
    ticks.now += 16

    def broken(presented: str, digest: str):
        raise RuntimeError("database away")

    lookup = resolver._lookup
    resolver._lookup = broken  # type: ignore[method-assign]
    assert resolver.cached(key.key) == first
    _settle(resolver)
    resolver._lookup = lookup  # type: ignore[method-assign]
    looked = resolver.lookups
    assert resolver.cached(key.key) == first  # within a second of the failure: no new try
    _settle(resolver)
    assert resolver.lookups == looked
    ticks.now += 1
    assert resolver.cached(key.key) == first  # hands off another refresh, which works
    _settle(resolver)
    assert resolver.lookups == looked + 1
    ticks.now += 19  # past the first entry's expiry, within the renewed one's
    assert resolver.cached(key.key) == first


def test_with_the_cache_off_every_request_looks_the_key_up(make_services):
    svc = make_services(api_key_cache_seconds=0)
    key = principals.create_api_key(svc, "platform", (Scope.WRITE,), "shop", actor="test")
    resolver = KeyResolver(svc)
    assert resolver.resolve(key.key) is not None
    assert resolver.cached(key.key) is None
    assert resolver.resolve(key.key) is not None
    assert resolver.lookups == 2
