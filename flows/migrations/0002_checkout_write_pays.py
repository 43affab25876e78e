"""Replace oms_checkout_write(jsonb): a paid checkout's statement also claims its
Idempotency-Key (in progress, checkpointed with the order) and writes the payment and its
pending authorize operation, so the order, the payment and the provider call's
checkpoint commit together (flows.checkout_sql). A document without `payment` is
written as 0001's function wrote it."""

from django.db import migrations

from flows.checkout_sql import CHECKOUT_WRITE_FUNCTION_SQL, CHECKOUT_WRITE_FUNCTION_SQL_0002


class Migration(migrations.Migration):
    dependencies = [
        ("flows", "0001_checkout_write_function"),
        ("payments", "0006_capture_per_shipment"),
    ]

    operations = [
        migrations.RunSQL(
            sql=CHECKOUT_WRITE_FUNCTION_SQL_0002, reverse_sql=CHECKOUT_WRITE_FUNCTION_SQL
        ),
    ]
