"""Staff take any order transition by name (the transitions endpoint and the admin's
actions). Each name goes to the one use case that owns it, so a transition taken by
hand has exactly the effects it has on the automatic path: ship captures, refund
refunds, cancel asks warehouses to withdraw and voids, expire releases stock.
"""

import uuid
from collections.abc import Callable

from core.actors import Actor
from flows.cancel import order_cancel
from flows.deliver import order_deliver
from flows.expire import order_expire
from flows.pay import order_payment_retry
from flows.payment_outcomes import order_confirm, order_fail_payment
from flows.refund import order_refund_in_full
from flows.route import order_route_manual
from flows.ship import order_ship
from orders.errors import InvalidTransition
from orders.models import Order
from orders.selectors import order_get_status

USE_CASE_BY_TRANSITION: dict[str, Callable[..., Order]] = {
    "confirm": order_confirm,
    "fail_payment": order_fail_payment,
    "retry_payment": order_payment_retry,
    "expire": order_expire,
    "cancel": order_cancel,
    "route": order_route_manual,
    "ship": order_ship,
    "deliver": order_deliver,
    "refund": order_refund_in_full,
}


def order_transition_by_name(
    *, order_id: uuid.UUID | str, transition: str, actor: Actor, reason: str = ""
) -> Order:
    """Run the use case that owns `transition`. Raise InvalidTransition for a name the
    order machine does not have."""
    use_case = USE_CASE_BY_TRANSITION.get(transition)
    if use_case is None:
        raise InvalidTransition(
            transition=transition, current_status=order_get_status(order_id=order_id)
        )
    return use_case(order_id=order_id, actor=actor, reason=reason)
