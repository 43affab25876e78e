import pytest
from django.urls import reverse

from notifications.models import EmailDelivery
from notifications.services import order_email_send

pytest_plugins = ("tests.support.smtp",)

Kind = EmailDelivery.Kind


@pytest.mark.django_db
def test_staff_list_deliveries_filtered_by_kind_and_status_but_cannot_change_them(
    admin_client, smtp_backend, make_order
):
    order = make_order()
    delivery = order_email_send(order_id=order.pk, kind=Kind.ORDER_CONFIRMED)
    changelist = reverse("admin:notifications_emaildelivery_changelist")

    listing = admin_client.get(changelist, {"kind": "order_confirmed", "status": "sent"})
    other = admin_client.get(changelist, {"kind": "order_shipped"})
    detail = admin_client.get(
        reverse("admin:notifications_emaildelivery_change", args=[delivery.pk])
    )
    add = admin_client.get(reverse("admin:notifications_emaildelivery_add"))

    assert listing.status_code == 200
    assert order.number in listing.content.decode()
    assert order.number not in other.content.decode()
    assert detail.status_code == 200
    assert delivery.message_id.strip("<>") in detail.content.decode()
    assert add.status_code == 403
