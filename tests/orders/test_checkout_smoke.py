import pytest

from inventory.models import StockItem


@pytest.mark.django_db
def test_checkout_reserves_stock_and_replays_same_key(
    customer_client, stocked_product, place_order
):
    product = stocked_product(quantities={"wh-a": 3})

    first = place_order(customer_client, [(product.sku, 2)], key="abc")
    second = place_order(customer_client, [(product.sku, 2)], key="abc")

    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    item = StockItem.objects.get(product=product)
    assert (item.on_hand, item.reserved) == (3, 2)
