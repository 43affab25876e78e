"""API keys: stored hashed, shown once, expiring, rotated with an overlap, revoked, their
last use recorded cheaply; keys that act for a customer; the staff endpoint and admin."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import api_key_create
from core.actors import Actor
from orders.models import Order
from tests.conftest import api_key_for, token_client
from tests.factories import StaffFactory, UserFactory


def client_with(key: str, scheme: str = "Bearer", **headers: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}", **headers)
    return client


@pytest.fixture
def admin_api(db):
    return token_client(StaffFactory(is_superuser=True, groups=[]))


def key_create(admin_api, **fields):
    body = {"user": fields.pop("user"), "name": "shop", "scopes": ["orders:read"], **fields}
    response = admin_api.post("/api/v1/api-keys/", body, format="json")
    assert response.status_code == 201, response.content
    return response


# Hashing and display -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_is_shown_once_and_only_its_hash_and_prefix_are_stored(admin_api, customer):
    # when
    created = key_create(admin_api, user=customer.username)

    # then the answer holds the key, and nothing stored does
    key = created.json()["key"]
    assert key.startswith("oms_")
    assert len(key) == 44
    assert created["Cache-Control"] == "no-store"
    row = ApiKey.objects.get(pk=created.json()["id"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:12] == created.json()["prefix"]
    stored = [str(value) for value in ApiKey.objects.filter(pk=row.pk).values().get().values()]
    assert not any(key in value for value in stored)
    # and it is never shown again
    listed = admin_api.get("/api/v1/api-keys/").json()
    detail = admin_api.get(f"/api/v1/api-keys/{row.pk}/").json()
    assert "key" not in detail
    assert all("key" not in item for item in listed)
    assert detail["prefix"] == key[:12]
    # and it works
    assert client_with(key).get("/api/v1/orders/").status_code == 200


@pytest.mark.django_db
def test_unknown_scopes_and_users_are_refused(admin_api, customer):
    response = admin_api.post(
        "/api/v1/api-keys/",
        {"user": "nobody", "name": "x", "scopes": ["orders:everything"]},
        format="json",
    )

    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {"user", "scopes[0]"}


@pytest.mark.django_db
def test_the_old_token_scheme_accepts_any_key(customer):
    key = api_key_for(customer)

    assert client_with(key, scheme="Token").get("/api/v1/orders/").status_code == 200


# Expiry, revocation, rotation ---------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_key_is_refused(customer):
    key = api_key_for(customer, expires_at=timezone.now() + timedelta(seconds=30))
    assert client_with(key).get("/api/v1/orders/").status_code == 200

    # when its time has passed
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_with(key).get("/api/v1/orders/")

    # then
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response.json()["detail"] == "API key expired."


@pytest.mark.django_db
def test_a_revoked_key_is_refused_at_once_and_stays_listed(admin_api, customer):
    created = key_create(admin_api, user=customer.pk).json()
    assert client_with(created["key"]).get("/api/v1/orders/").status_code == 200

    # when
    revoked = admin_api.delete(f"/api/v1/api-keys/{created['id']}/")

    # then
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    response = client_with(created["key"]).get("/api/v1/orders/")
    assert response.status_code == 401
    assert response.json()["detail"] == "API key revoked."


@pytest.mark.django_db
def test_a_rotated_key_keeps_working_until_the_overlap_ends(admin_api, customer):
    # given
    old = key_create(admin_api, user=customer.username, act_as_customer=False).json()
    overlap_until = timezone.now() + timedelta(hours=2)

    # when
    rotated = admin_api.post(
        f"/api/v1/api-keys/{old['id']}/rotate/",
        {"old_key_expires_at": overlap_until.isoformat()},
        format="json",
    )

    # then both work during the overlap
    assert rotated.status_code == 201, rotated.content
    new = rotated.json()
    assert new["key"] != old["key"]
    assert (new["name"], new["scopes"], new["user"]) == (old["name"], old["scopes"], old["user"])
    assert client_with(old["key"]).get("/api/v1/orders/").status_code == 200
    assert client_with(new["key"]).get("/api/v1/orders/").status_code == 200
    old_row = ApiKey.objects.get(pk=old["id"])
    assert old_row.expires_at == overlap_until
    assert old_row.replaced_by_id == new["id"]
    # and once it ends, only the new one
    ApiKey.objects.filter(pk=old["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(old["key"]).get("/api/v1/orders/").status_code == 401
    assert client_with(new["key"]).get("/api/v1/orders/").status_code == 200
    # and a key is rotated once
    again = admin_api.post(f"/api/v1/api-keys/{old['id']}/rotate/", {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "api_key_not_active"


@pytest.mark.django_db
def test_rotation_without_a_time_keeps_the_old_key_for_the_configured_overlap(
    admin_api, customer, settings
):
    settings.API_KEY_ROTATION_OVERLAP = timedelta(minutes=5)
    old = key_create(admin_api, user=customer.username).json()

    rotated = admin_api.post(f"/api/v1/api-keys/{old['id']}/rotate/", {}, format="json")

    assert rotated.status_code == 201
    expires_at = ApiKey.objects.get(pk=old["id"]).expires_at
    assert timedelta(minutes=4) < expires_at - timezone.now() <= timedelta(minutes=5)


# Last use ------------------------------------------------------------------------------


def _key_updates(queries) -> int:
    return sum(
        1 for query in queries.captured_queries if query["sql"].startswith('UPDATE "access_apikey"')
    )


@pytest.mark.django_db
def test_last_use_is_written_at_most_once_a_minute(customer):
    key = api_key_for(customer)
    client = client_with(key)

    # when it is used three times in a row
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get("/api/v1/products/").status_code == 200

    # then one write recorded the first use
    assert _key_updates(queries) == 1
    first_use = ApiKey.objects.get().last_used_at
    assert first_use is not None

    # when a minute has passed since
    ApiKey.objects.update(last_used_at=timezone.now() - timedelta(seconds=61))
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/products/")

    # then it is written again
    assert _key_updates(queries) == 1
    assert ApiKey.objects.get().last_used_at > first_use


# Acting for a customer ----------------------------------------------------------------


@pytest.fixture
def storefront_key(db):
    storefront = UserFactory(username="storefront")
    return api_key_for(storefront, act_as_customer=True)


@pytest.mark.django_db
def test_a_storefront_places_an_order_for_its_customer(
    storefront_key, customer, stocked_product, place_order
):
    # given
    product = stocked_product()
    client = client_with(storefront_key, HTTP_OMS_ON_BEHALF_OF=customer.username)

    # when
    response = place_order(client, [(product.sku, 1)])

    # then the order is the customer's, and the audit trail names both
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    assert order.customer == customer
    change = order.status_changes.get()
    assert change.actor == customer
    assert change.actor_label == f"storefront for {customer.username}"
    # and the customer sees it, by id too
    by_id = client_with(storefront_key, HTTP_OMS_ON_BEHALF_OF=str(customer.pk))
    assert by_id.get(f"/api/v1/orders/{order.pk}/").status_code == 200
    assert token_client(customer).get(f"/api/v1/orders/{order.pk}/").status_code == 200


@pytest.mark.django_db
def test_a_key_without_the_capability_cannot_act_for_a_customer(customer, other_customer):
    client = client_with(api_key_for(customer), HTTP_OMS_ON_BEHALF_OF=other_customer.username)

    response = client.get("/api/v1/orders/")

    assert response.status_code == 403
    assert response.json()["code"] == "on_behalf_of_not_allowed"


@pytest.mark.django_db
@pytest.mark.parametrize("named", ["nobody", "staff", "inactive", ""])
def test_a_storefront_can_act_only_for_an_active_customer(storefront_key, named):
    StaffFactory(username="staff")
    UserFactory(username="inactive", is_active=False)
    client = client_with(storefront_key, HTTP_OMS_ON_BEHALF_OF=named)

    response = client.get("/api/v1/orders/")

    assert response.status_code == 422
    assert response.json()["code"] == "unknown_customer"


# Admin and demo data ------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_make_a_key_in_the_admin_and_see_it_once(admin_client, customer):
    # when
    response = admin_client.post(
        reverse("admin:access_apikey_add"),
        {"user": customer.pk, "name": "shop", "scopes": ["orders:read", "catalog:read"]},
    )

    # then the page shows the key, and the row holds only its hash
    assert response.status_code == 200, response.content
    api_key = ApiKey.objects.get(user=customer)
    page = response.content.decode()
    key = page.split("<code>", 1)[1].split("</code>", 1)[0]
    assert key.startswith(api_key.prefix)
    assert api_key.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert api_key.scopes == ["catalog:read", "orders:read"]
    assert client_with(key).get("/api/v1/orders/").status_code == 200
    change = admin_client.get(reverse("admin:access_apikey_change", args=[api_key.pk]))
    assert key not in change.content.decode()


@pytest.mark.django_db
def test_staff_revoke_and_rotate_keys_in_the_admin(admin_client, customer):
    revoked = api_key_create(user=customer, name="a", scopes=["orders:read"], actor=Actor.system())
    rotated = api_key_create(user=customer, name="b", scopes=["orders:read"], actor=Actor.system())
    url = reverse("admin:access_apikey_changelist")

    admin_client.post(url, {"action": "revoke_keys", "_selected_action": [revoked.api_key.pk]})
    page = admin_client.post(
        url, {"action": "rotate_keys", "_selected_action": [rotated.api_key.pk]}
    )

    assert client_with(revoked.key).get("/api/v1/orders/").status_code == 401
    new_key = page.content.decode().split("<code>", 1)[1].split("</code>", 1)[0]
    assert client_with(new_key).get("/api/v1/orders/").status_code == 200
    assert client_with(rotated.key).get("/api/v1/orders/").status_code == 200  # overlap


@pytest.mark.django_db
def test_the_demo_prints_the_same_working_keys_on_every_run():
    first, second = StringIO(), StringIO()

    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)

    keys = [line.rsplit(" ", 1)[1] for line in first.getvalue().splitlines() if "oms_" in line]
    assert len(keys) == 3
    assert first.getvalue() == second.getvalue()
    alice, staff, storefront = keys
    assert client_with(alice).get("/api/v1/orders/").status_code == 200
    assert client_with(alice, scheme="Token").get("/api/v1/orders/").status_code == 200
    assert client_with(staff).get("/api/v1/stock/").status_code == 200
    acting = client_with(storefront, HTTP_OMS_ON_BEHALF_OF="alice")
    assert acting.get("/api/v1/orders/").status_code == 200


@pytest.mark.django_db
def test_a_missing_key_is_a_401_that_names_the_bearer_scheme(anonymous_client):
    response = anonymous_client.get("/api/v1/orders/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_order_lists_hold_only_the_callers_or_the_named_customers_orders(
    storefront_key, customer, other_customer, stocked_product, place_order
):
    # given
    product = stocked_product()
    mine = place_order(token_client(customer), [(product.sku, 1)]).json()["id"]
    theirs = place_order(token_client(other_customer), [(product.sku, 1)]).json()["id"]
    for_other = client_with(storefront_key, HTTP_OMS_ON_BEHALF_OF=other_customer.username)

    # when
    my_list = token_client(customer).get("/api/v1/orders/").json()["results"]
    acting_list = for_other.get("/api/v1/orders/").json()["results"]

    # then
    assert [order["id"] for order in my_list] == [mine]
    assert [order["id"] for order in acting_list] == [theirs]
