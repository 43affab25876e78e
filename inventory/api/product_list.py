"""The product list as served: rendered once, kept in the shared cache for at most
PRODUCT_LIST_CACHE_SECONDS, with an ETag from its content.

Staleness bound: an entry is rendered from one read of the database and expires
PRODUCT_LIST_CACHE_SECONDS after it is stored, so the availability a client sees is at
most that many seconds (plus one render) older than the database. Nothing private is in
it: the list is the same for every caller allowed to read it.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches

from inventory import selectors

# Bump when the rendering changes shape: entries of the old shape are then not read.
CACHE_KEY = "inventory:product-list:v1"


@dataclass(frozen=True)
class ProductList:
    etag: str
    products: list[dict[str, Any]]


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
    """From the shared cache when it holds an entry, else rendered (and stored)."""
    seconds = settings.PRODUCT_LIST_CACHE_SECONDS
    if seconds <= 0:
        return product_list_render()
    cache = caches[settings.PRODUCT_LIST_CACHE]
    cached = cache.get(CACHE_KEY)
    if isinstance(cached, ProductList):
        return cached
    rendered = product_list_render()
    cache.set(CACHE_KEY, rendered, timeout=seconds)
    return rendered
