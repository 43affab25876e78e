from django.urls import path

from inventory.api import views

urlpatterns = [
    path("products/", views.ProductListCreateApi.as_view(), name="product-list"),
    path("products/<str:sku>/", views.ProductDetailApi.as_view(), name="product-detail"),
    path("warehouses/", views.WarehouseListCreateApi.as_view(), name="warehouse-list"),
    path("stock/", views.StockListApi.as_view(), name="stock-list"),
    path(
        "stock/adjustments/",
        views.StockAdjustmentCreateApi.as_view(),
        name="stock-adjustment-create",
    ),
]
