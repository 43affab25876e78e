from typing import Any

from django.core.management.base import BaseCommand

from flows.reconcile import payments_reconcile


class Command(BaseCommand):
    help = (
        "Resolve payment operations with an unknown outcome, orders stuck waiting for "
        "payment, and authorizations of cancelled or expired orders."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = payments_reconcile()
        self.stdout.write(
            f"resolved={report.resolved} voided={report.voided} "
            f"still_unknown={report.still_unknown} errors={len(report.errors)}"
        )
        for error in report.errors:
            self.stderr.write(error)
