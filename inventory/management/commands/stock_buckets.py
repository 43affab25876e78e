"""Split a hot product's stock in a warehouse over N bucket rows, or even them out."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import DomainError
from inventory.services import stock_buckets_set, stock_rebalance


class Command(BaseCommand):
    help = (
        "Split the stock of SKU at WAREHOUSE over N bucket rows (concurrent checkouts then "
        "lock different rows) and spread its unreserved units evenly over them; without "
        "--buckets, only rebalance. Buckets can be added, not removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sku")
        parser.add_argument("warehouse", help="warehouse code")
        parser.add_argument("--buckets", type=int, default=None, help="N (at least 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system(request_id="stock_buckets")
        try:
            if options["buckets"] is None:
                buckets = stock_rebalance(
                    sku=options["sku"], warehouse_code=options["warehouse"], actor=actor
                )
            else:
                buckets = stock_buckets_set(
                    sku=options["sku"],
                    warehouse_code=options["warehouse"],
                    buckets=options["buckets"],
                    actor=actor,
                )
        except (DomainError, ValueError) as error:
            raise CommandError(str(error)) from error
        for bucket in buckets:
            self.stdout.write(
                f"{options['sku']}@{options['warehouse']} bucket {bucket.bucket}: "
                f"on_hand {bucket.on_hand}, reserved {bucket.reserved}"
            )
