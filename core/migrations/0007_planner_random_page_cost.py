"""Tell the planner that a random page read costs about what a sequential one does.

PostgreSQL's default random_page_cost (4) models spinning disks. oms's hot tables live
in memory or on SSDs, where it misjudges index scans: a customer with many orders older
than everyone else's had their first page read by scanning created_at backwards and
filtering out every other customer's order (1.4 ms for 4,000 newer orders) instead of
reading order_customer_recent (0.04 ms). 1.1 is the usual value for SSD-backed servers.

Set for the database (sessions opened after the migration) and for this session. A
cluster on spinning disks can undo it: ALTER DATABASE ... RESET random_page_cost.
"""

from django.db import migrations

RANDOM_PAGE_COST = "1.1"

FORWARD = f"""
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET random_page_cost = {RANDOM_PAGE_COST}', current_database());
END
$$;
SET random_page_cost = {RANDOM_PAGE_COST};
"""

REVERSE = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET random_page_cost', current_database());
END
$$;
RESET random_page_cost;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0006_outbox_trace_context")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
