from tests.factories.inventory import (
    ProductFactory,
    StockItemFactory,
    WarehouseFactory,
)
from tests.factories.users import StaffFactory, UserFactory

__all__ = [
    "ProductFactory",
    "StaffFactory",
    "StockItemFactory",
    "UserFactory",
    "WarehouseFactory",
]
