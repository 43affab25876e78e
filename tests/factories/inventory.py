import factory

from inventory.models import Product, StockItem, Warehouse


class WarehouseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Warehouse

    code = factory.Sequence(lambda n: f"wh-{n}")
    name = factory.LazyAttribute(lambda warehouse: f"Warehouse {warehouse.code}")
    region = "eu-central"
    priority = 0


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.LazyAttribute(lambda product: f"Product {product.sku}")
    price = 1000
    currency = "EUR"


class StockItemFactory(factory.django.DjangoModelFactory):
    """Stock created through the ledger would be better; use `stock_receive` in tests
    that check the ledger. This factory writes counters directly."""

    class Meta:
        model = StockItem

    product = factory.SubFactory(ProductFactory)
    warehouse = factory.SubFactory(WarehouseFactory)
    on_hand = 0
    reserved = 0
