"""The product list as served: rendered once, kept in the shared cache for at most
PRODUCT_LIST_CACHE_SECONDS, with an ETag from its content.

Staleness bound: an entry is rendered from one read of the database and expires
PRODUCT_LIST_CACHE_SECONDS after it is stored, so the availability a client sees is at
most that many seconds (plus one render) older than the database. Nothing private is in
it: the list is the same for every caller allowed to read it.

Each process also holds the entry it last read or stored, until the entry's own expiry
(`expires_at`, set once when it is rendered): that copy is served without asking the
shared cache, and the bound stays the same (by the host clocks, which NTP keeps within
milliseconds of each other). A Redis GET and the unpickling of the list were a third of
the CPU of a cached product list `304` (issue 11).
"""

import hashlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.core.cache import caches

from inventory import selectors

# Bump when the rendering changes shape: entries of the old shape are then not read.
CACHE_KEY = "inventory:product-list:v2"


@dataclass(frozen=True)
class ProductList:
    etag: str
    products: list[dict[str, Any]]
    # Unix time past which this rendering is not served (0: never cached).
    expires_at: float = 0.0


# This process's copy of the shared entry (one reference: replaced whole, never changed).
_held: ProductList | None = None


def product_list_render() -> ProductList:
    """ProductOutputSerializer's fields built from plain rows: DRF's path (a model
    instance and five field objects per product) cost ~170 Python calls a product.
    tests/perf/test_conditional_reads.py holds the two equal."""
    # (`available` is product_list's annotation, which the stubs do not see.)
    fields = ("sku", "name", "price", "currency", "available", "backorder_limit", "backordered")
    rows = selectors.product_list().values_list(*fields)
    products = [
        {
            "sku": str(sku),
            "name": str(name),
            "price": int(price),
            "currency": str(currency),
            "available": int(available),
            "allows_backorder": limit > 0,
            "backorder_available": max(limit - backordered, 0),
        }
        for sku, name, price, currency, available, limit, backordered in rows
    ]
    digest = hashlib.sha256(
        json.dumps(products, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:32]
    return ProductList(etag=f'"p-{digest}"', products=products)


def product_list_current() -> ProductList:
    """This process's copy while it has not expired, else the shared cache's entry, else
    rendered (and stored)."""
    global _held
    seconds = settings.PRODUCT_LIST_CACHE_SECONDS
    if seconds <= 0:
        return product_list_render()
    now = time.time()
    held = _held
    if held is not None and now < held.expires_at:
        return held
    cache = caches[settings.PRODUCT_LIST_CACHE]
    cached = cache.get(CACHE_KEY)
    if isinstance(cached, ProductList) and now < cached.expires_at:
        _held = cached
        return cached
    # Expires `seconds` after the read began, so the bound holds render time included.
    rendered = replace(product_list_render(), expires_at=now + seconds)
    cache.set(CACHE_KEY, rendered, timeout=seconds)
    _held = rendered
    return rendered


def product_list_forget() -> None:
    """Drop the shared entry and this process's copy (tests start from an empty cache
    with it; other processes keep their copy until it expires)."""
    global _held
    _held = None
    caches[settings.PRODUCT_LIST_CACHE].delete(CACHE_KEY)
