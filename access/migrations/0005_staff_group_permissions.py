"""Give the staff groups the Django model permissions that let the admin show each group
the records it works with. What a group may *do* (cancel, ship, refund, adjust stock) is
not a model permission: the admin asks access.policy, the table the API uses.

support: orders with their lines, history and events, payments, shipments and fulfilment
requests, and (read only, as GET /stock/ allows) products, warehouses and stock.
warehouse: orders, shipments, fulfilment requests; products and warehouses (add and
change, as POST /products/ and /warehouses/ allow), stock, its ledger and reservations.
finance: orders, payments with their provider calls and Stripe's events.
admin: API keys.

Reversing the migration takes these permissions away again.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ORDER_RECORDS = (
    "orders.view_order",
    "orders.view_orderline",
    "orders.view_orderstatuschange",
    "orders.view_orderevent",
)
PAYMENT_RECORDS = ("payments.view_payment", "payments.view_paymentoperation")
SHIPPING_RECORDS = ("fulfilment.view_shipment", "fulfilment.view_fulfilmentrequest")
CATALOGUE_READ = (
    "inventory.view_product",
    "inventory.view_warehouse",
    "inventory.view_stockitem",
)

PERMISSIONS_OF_GROUP = {
    "support": (*ORDER_RECORDS, *PAYMENT_RECORDS, *SHIPPING_RECORDS, *CATALOGUE_READ),
    "warehouse": (
        *ORDER_RECORDS,
        *SHIPPING_RECORDS,
        *CATALOGUE_READ,
        "inventory.add_product",
        "inventory.change_product",
        "inventory.add_warehouse",
        "inventory.change_warehouse",
        "inventory.view_stockmovement",
        "inventory.view_reservation",
    ),
    "finance": (
        *ORDER_RECORDS,
        *PAYMENT_RECORDS,
        "payments.view_stripeevent",
        "inventory.view_product",
    ),
    "admin": ("access.view_apikey", "access.add_apikey", "access.change_apikey"),
}


def _permissions(apps, labels):
    Permission = apps.get_model("auth", "Permission")
    found = []
    for label in labels:
        app_label, codename = label.split(".")
        found.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return found


def grant(apps, schema_editor):
    # Model permissions are made after migrations (post_migrate); make them now.
    for app_config in apps.get_app_configs():
        # A migration's app configs have no models module; create_permissions wants one.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    for name, labels in PERMISSIONS_OF_GROUP.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*_permissions(apps, labels))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, labels in PERMISSIONS_OF_GROUP.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, labels))


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0004_service_group"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0002_order_event_log"),
        ("payments", "0004_payment_refunded_state"),
        ("fulfilment", "0002_state_machines"),
        ("inventory", "0004_product_low_stock_threshold"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
