"""Invariants the data must satisfy after the run."""

from dataclasses import dataclass


@dataclass
class CorrectnessReport:
    problems: list[str]
    orders: int
    stock_items: int

    @property
    def ok(self) -> bool:
        return not self.problems


def correctness_check(
    expected_orders: int, *, history_customer_id: int | None = None, paid: bool = False
) -> CorrectnessReport:
    """Stock invariants after the run; every placed order is fully reserved (the seeded
    history customer's delivered orders hold nothing, and count as expected). With
    `paid` (--payment), every placed order also has exactly one payment, authorized for
    its total."""
    from django.db.models import F, Q, Sum
    from django.db.models.functions import Coalesce

    from core.models import IdempotencyKey
    from inventory.models import Reservation, StockItem
    from inventory.selectors import stock_ledger_totals
    from orders.models import Order, OrderLine

    held = Q(reservations__status=Reservation.Status.HELD)
    problems = []
    out_of_range = StockItem.objects.filter(Q(reserved__lt=0) | Q(reserved__gt=F("on_hand")))
    if count := out_of_range.count():
        problems.append(f"{count} stock item(s) with reserved < 0 or reserved > on_hand")
    mismatched = (
        StockItem.objects.annotate(held=Coalesce(Sum("reservations__quantity", filter=held), 0))
        .exclude(reserved=F("held"))
        .count()
    )
    if mismatched:
        problems.append(f"{mismatched} stock item(s) whose reserved != sum of held reservations")
    ledger = stock_ledger_totals()
    counters = {item.pk: (item.on_hand, item.reserved) for item in StockItem.objects.all()}
    drift = [pk for pk, values in counters.items() if ledger.get(pk, (0, 0)) != values]
    if drift:
        problems.append(f"{len(drift)} stock item(s) disagree with the movement ledger")
    lines = OrderLine.objects.all()
    if history_customer_id is not None:
        lines = lines.exclude(order__customer_id=history_customer_id)
    unreserved = (
        lines.annotate(held=Coalesce(Sum("reservations__quantity", filter=held), 0))
        .exclude(quantity=F("held"))
        .count()
    )
    if unreserved:
        problems.append(f"{unreserved} order line(s) not exactly covered by held reservations")
    orders = Order.objects.count()
    if orders != expected_orders:
        problems.append(f"{orders} orders in the database, {expected_orders} acknowledged")
    if paid:
        problems += _payment_problems(history_customer_id)
    stuck = IdempotencyKey.objects.filter(status=IdempotencyKey.Status.IN_PROGRESS).count()
    if stuck:
        problems.append(f"{stuck} idempotency key(s) left in progress")
    return CorrectnessReport(problems=problems, orders=orders, stock_items=len(counters))


def _payment_problems(history_customer_id: int | None) -> list[str]:
    """Every order placed by the run has one payment: authorized (nothing captured yet),
    current, with a provider intent id, for its total in its currency."""
    from django.db.models import Count, F, Q

    from orders.models import Order
    from payments.models import Payment

    orders = Order.objects.all()
    if history_customer_id is not None:
        orders = orders.exclude(customer_id=history_customer_id)
    authorized = Q(
        payments__status=Payment.Status.AUTHORIZED,
        payments__is_current=True,
        payments__amount=F("total_amount"),
        payments__currency=F("currency"),
        payments__amount_captured=0,
        payments__provider_payment_id__isnull=False,
    )
    counted = orders.annotate(
        payments_count=Count("payments"), authorized_count=Count("payments", filter=authorized)
    )
    problems = []
    if unpaid := counted.filter(payments_count=0).count():
        problems.append(f"{unpaid} order(s) without a payment")
    if several := counted.filter(payments_count__gt=1).count():
        problems.append(f"{several} order(s) with more than one payment")
    if wrong := counted.filter(payments_count=1).exclude(authorized_count=1).count():
        problems.append(f"{wrong} order(s) whose payment is not authorized for the total")
    return problems
