"""Install oms_checkout_write(jsonb), the single statement of a checkout's writes
(flows.checkout_sql). No model: the function writes other apps' tables, so it comes
after their latest migrations."""

from django.db import migrations

from flows.checkout_sql import CHECKOUT_WRITE_FUNCTION_DROP_SQL, CHECKOUT_WRITE_FUNCTION_SQL


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("core", "0006_outbox_trace_context"),
        ("orders", "0008_order_awaiting_stock"),
        ("inventory", "0007_product_backorders_and_claims"),
    ]

    operations = [
        migrations.RunSQL(
            sql=CHECKOUT_WRITE_FUNCTION_SQL, reverse_sql=CHECKOUT_WRITE_FUNCTION_DROP_SQL
        ),
    ]
