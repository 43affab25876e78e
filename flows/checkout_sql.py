"""Checkout in few round trips: the SQL of flows.place's single-statement path.

`checkout_rows_read` reads the ordered products and their available stock rows in one
statement. `checkout_write` (and `checkout_paid_write`) calls `oms_checkout_write(jsonb)`,
the PL/pgSQL function the flows migrations install (0001 from
`CHECKOUT_WRITE_FUNCTION_SQL`, replaced by 0002 from `CHECKOUT_WRITE_FUNCTION_SQL_0002`),
with every row of the checkout built in Python as plain data: one statement, its own
transaction in autocommit (no BEGIN, SAVEPOINT or COMMIT round trip). In order, it writes

  1. the Idempotency-Key: completed with its response, or, for a paid checkout, claimed
     by this request (in progress, locked, checkpointed with the order's id, as
     core.idempotency's multi-step path leaves it). Either way it is claimed in the
     order's transaction: a concurrent request with the same key waits on its unique
     index until this one ends. A key that exists raises KEY_TAKEN_SQLSTATE, writing
     nothing;
  2. the order, its lines, the audit row (orders_orderstatuschange) and the order event
     (as orders.audit.order_event_record writes it: next sequence, the transaction's
     id, the notification on oms_order_events delivered at commit, and the outbox
     messages of its topic when a handler wants them);
  2b. (0002, a paid checkout) the payment and its pending authorize operation, whose id
     gives the provider's idempotency key: committed with the order, before the
     provider is called (flows.pay);
  3. last, the hot rows: the stock rows locked in primary-key order, reserved raised
     only where on_hand still covers it (as inventory.services._RESERVE_SQL), and, when
     every row took its units, the reservations and their ledger rows; else it raises
     STOCK_RACE_LOST_SQLSTATE and the whole statement rolls back.

The function is frozen once a migration installed it: a change is a new constant and a
new migration (CREATE OR REPLACE), never an edit of this one.
"""

import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction

from core.idempotency import KeyTaken
from inventory.errors import ReservationRaceLost
from inventory.services import StockRow

# Raised by oms_checkout_write (custom SQLSTATEs, class "OM").
KEY_TAKEN_SQLSTATE = "OMK01"
STOCK_RACE_LOST_SQLSTATE = "OMR01"

CHECKOUT_WRITE_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION oms_checkout_write(checkout jsonb) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key jsonb := checkout->'key';
    v_order jsonb := checkout->'order';
    v_change jsonb := checkout->'status_change';
    v_event jsonb := checkout->'event';
    v_stock jsonb := checkout->'stock';
    v_order_id uuid := (checkout->'order'->>'id')::uuid;
    v_now timestamptz := (checkout->'stock'->>'now')::timestamptz;
    v_wanted integer;
    v_updated integer;
    v_outbox_ids bigint[] := '{}';
BEGIN
    -- 1. The key, completed. ON CONFLICT waits for a concurrent claim of the same key.
    INSERT INTO core_idempotencykey
        (user_id, key, request_method, request_path, request_fingerprint, status,
         locked_at, resource_id, response_status, response_body, created_at, completed_at)
    VALUES ((v_key->>'user_id')::integer, v_key->>'key', v_key->>'request_method',
            v_key->>'request_path', v_key->>'request_fingerprint', v_key->>'status', NULL,
            v_key->>'resource_id', (v_key->>'response_status')::smallint,
            v_key->'response_body', (v_key->>'created_at')::timestamptz,
            (v_key->>'completed_at')::timestamptz)
    ON CONFLICT (user_id, key) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key exists' USING ERRCODE = 'OMK01';
    END IF;

    -- 2. The order, its lines (in the request's order), the audit row and the event.
    INSERT INTO orders_order
        (id, number, customer_id, email, shipping_address, currency, subtotal_amount,
         shipping_amount, tax_amount, total_amount, shipping_method, status,
         reservation_expires_at, created_at, updated_at)
    VALUES (v_order_id, v_order->>'number', (v_order->>'customer_id')::integer,
            v_order->>'email', v_order->'shipping_address', v_order->>'currency',
            (v_order->>'subtotal_amount')::bigint, (v_order->>'shipping_amount')::bigint,
            (v_order->>'tax_amount')::bigint, (v_order->>'total_amount')::bigint,
            v_order->>'shipping_method', v_order->>'status',
            (v_order->>'reservation_expires_at')::timestamptz,
            (v_order->>'created_at')::timestamptz, (v_order->>'updated_at')::timestamptz);

    INSERT INTO orders_orderline
        (order_id, product_id, sku, name, unit_price, quantity, line_total, tax_amount,
         returned_quantity, shipped_quantity)
    SELECT v_order_id, (l.line->>'product_id')::bigint, l.line->>'sku', l.line->>'name',
           (l.line->>'unit_price')::bigint, (l.line->>'quantity')::integer,
           (l.line->>'unit_price')::bigint * (l.line->>'quantity')::integer,
           (l.line->>'tax_amount')::bigint, 0, 0
    FROM jsonb_array_elements(checkout->'lines') WITH ORDINALITY AS l(line, position)
    ORDER BY l.position;

    INSERT INTO orders_orderstatuschange
        (order_id, from_status, to_status, transition, actor_id, actor_label, reason,
         request_id, created_at)
    VALUES (v_order_id, v_change->>'from_status', v_change->>'to_status',
            v_change->>'transition', (v_change->>'actor_id')::integer,
            v_change->>'actor_label', v_change->>'reason', v_change->>'request_id',
            (v_change->>'created_at')::timestamptz);

    -- As orders.audit._EVENT_INSERT_SQL: the order's next sequence, the transaction's
    -- id, and the notification PostgreSQL delivers when (and only if) it commits.
    INSERT INTO orders_orderevent
        (id, order_id, sequence, type, occurred_at, api_version, data, txid)
    SELECT (v_event->>'id')::uuid, v_order_id, COALESCE(MAX(ev.sequence), 0) + 1,
           v_event->>'type', (v_event->>'occurred_at')::timestamptz,
           v_event->>'api_version', v_event->'data', pg_current_xact_id()::text::bigint
    FROM orders_orderevent ev WHERE ev.order_id = v_order_id;
    PERFORM pg_notify('oms_order_events', v_order_id::text);

    -- The event's outbox messages, if a handler wants them (as core.outbox.outbox_publish:
    -- a repeated dedup key is written once; the pending ones are dispatched after commit).
    IF jsonb_array_length(checkout->'outbox') > 0 THEN
        INSERT INTO core_outboxmessage
            (topic, handler, queue, payload, dedup_key, status, attempts, available_at,
             last_error, created_at, request_id, trace_context)
        SELECT m.message->>'topic', m.message->>'handler', m.message->>'queue',
               m.message->'payload', m.message->>'dedup_key', m.message->>'status', 0,
               (m.message->>'available_at')::timestamptz, '',
               (m.message->>'created_at')::timestamptz, m.message->>'request_id',
               m.message->'trace_context'
        FROM jsonb_array_elements(checkout->'outbox') WITH ORDINALITY AS m(message, position)
        ORDER BY m.position
        ON CONFLICT (dedup_key) DO NOTHING;
        SELECT array_agg(o.id ORDER BY o.id) INTO v_outbox_ids
        FROM core_outboxmessage o
        WHERE o.dedup_key IN (SELECT m.message->>'dedup_key'
                              FROM jsonb_array_elements(checkout->'outbox') AS m(message))
          AND o.status = 'pending';
    END IF;

    -- 3. Last, the hot rows, as inventory.services._RESERVE_SQL: lock the stock rows in
    -- primary-key order and raise reserved where on_hand still covers it (rechecked on
    -- the row's latest version). Any row short: nothing is kept.
    WITH wanted AS (
        SELECT (w.item->>'stock_item_id')::bigint AS stock_item_id,
               (w.item->>'quantity')::integer AS quantity
        FROM jsonb_array_elements(v_stock->'plan') AS w(item)
    ), totals AS (
        SELECT stock_item_id, sum(quantity)::integer AS quantity
        FROM wanted GROUP BY stock_item_id
    ), locked AS MATERIALIZED (
        SELECT s.id FROM inventory_stockitem s
        WHERE s.id IN (SELECT stock_item_id FROM totals)
        ORDER BY s.id
        FOR NO KEY UPDATE
    ), updated AS (
        UPDATE inventory_stockitem s
        SET reserved = s.reserved + t.quantity, updated_at = v_now
        FROM totals t JOIN locked k ON k.id = t.stock_item_id
        WHERE s.id = t.stock_item_id AND s.on_hand >= s.reserved + t.quantity
        RETURNING s.id
    )
    SELECT (SELECT count(*) FROM totals), (SELECT count(*) FROM updated)
    INTO v_wanted, v_updated;
    IF v_updated <> v_wanted THEN
        RAISE EXCEPTION 'stock race lost' USING ERRCODE = 'OMR01';
    END IF;

    WITH reserved AS (
        INSERT INTO inventory_reservation
            (created_at, updated_at, order_line_id, stock_item_id, quantity, status,
             expires_at)
        SELECT v_now, v_now, l.id, (w.item->>'stock_item_id')::bigint,
               (w.item->>'quantity')::integer, v_stock->>'held',
               (v_stock->>'expires_at')::timestamptz
        FROM jsonb_array_elements(v_stock->'plan') WITH ORDINALITY AS w(item, position)
        JOIN orders_orderline l
          ON l.order_id = v_order_id AND l.product_id = (w.item->>'product_id')::bigint
        ORDER BY w.position
        RETURNING id, stock_item_id, quantity
    )
    INSERT INTO inventory_stockmovement
        (stock_item_id, kind, on_hand_delta, reserved_delta, reason, reservation_id,
         actor_id, request_id, created_at)
    SELECT r.stock_item_id, v_stock->>'kind', 0, r.quantity, '', r.id,
           (v_stock->>'actor_id')::integer, v_stock->>'request_id', v_now
    FROM reserved r ORDER BY r.id;

    RETURN v_outbox_ids;
END
$fn$
"""

CHECKOUT_WRITE_FUNCTION_SQL_0002 = """
CREATE OR REPLACE FUNCTION oms_checkout_write(checkout jsonb) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key jsonb := checkout->'key';
    v_order jsonb := checkout->'order';
    v_change jsonb := checkout->'status_change';
    v_event jsonb := checkout->'event';
    v_stock jsonb := checkout->'stock';
    v_order_id uuid := (checkout->'order'->>'id')::uuid;
    v_now timestamptz := (checkout->'stock'->>'now')::timestamptz;
    v_wanted integer;
    v_updated integer;
    v_outbox_ids bigint[] := '{}';
    v_payment jsonb := checkout->'payment';
    v_payment_id bigint;
    v_operation_id bigint;
BEGIN
    -- 1. The key: completed, or (a paid checkout) claimed by this request and
    -- checkpointed with the order. ON CONFLICT waits for a concurrent claim of the key.
    INSERT INTO core_idempotencykey
        (user_id, key, request_method, request_path, request_fingerprint, status,
         locked_at, resource_id, response_status, response_body, created_at, completed_at)
    VALUES ((v_key->>'user_id')::integer, v_key->>'key', v_key->>'request_method',
            v_key->>'request_path', v_key->>'request_fingerprint', v_key->>'status',
            (v_key->>'locked_at')::timestamptz, v_key->>'resource_id',
            (v_key->>'response_status')::smallint,
            NULLIF(v_key->'response_body', 'null'::jsonb), (v_key->>'created_at')::timestamptz,
            (v_key->>'completed_at')::timestamptz)
    ON CONFLICT (user_id, key) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key exists' USING ERRCODE = 'OMK01';
    END IF;

    -- 2. The order, its lines (in the request's order), the audit row and the event.
    INSERT INTO orders_order
        (id, number, customer_id, email, shipping_address, currency, subtotal_amount,
         shipping_amount, tax_amount, total_amount, shipping_method, status,
         reservation_expires_at, created_at, updated_at)
    VALUES (v_order_id, v_order->>'number', (v_order->>'customer_id')::integer,
            v_order->>'email', v_order->'shipping_address', v_order->>'currency',
            (v_order->>'subtotal_amount')::bigint, (v_order->>'shipping_amount')::bigint,
            (v_order->>'tax_amount')::bigint, (v_order->>'total_amount')::bigint,
            v_order->>'shipping_method', v_order->>'status',
            (v_order->>'reservation_expires_at')::timestamptz,
            (v_order->>'created_at')::timestamptz, (v_order->>'updated_at')::timestamptz);

    INSERT INTO orders_orderline
        (order_id, product_id, sku, name, unit_price, quantity, line_total, tax_amount,
         returned_quantity, shipped_quantity)
    SELECT v_order_id, (l.line->>'product_id')::bigint, l.line->>'sku', l.line->>'name',
           (l.line->>'unit_price')::bigint, (l.line->>'quantity')::integer,
           (l.line->>'unit_price')::bigint * (l.line->>'quantity')::integer,
           (l.line->>'tax_amount')::bigint, 0, 0
    FROM jsonb_array_elements(checkout->'lines') WITH ORDINALITY AS l(line, position)
    ORDER BY l.position;

    INSERT INTO orders_orderstatuschange
        (order_id, from_status, to_status, transition, actor_id, actor_label, reason,
         request_id, created_at)
    VALUES (v_order_id, v_change->>'from_status', v_change->>'to_status',
            v_change->>'transition', (v_change->>'actor_id')::integer,
            v_change->>'actor_label', v_change->>'reason', v_change->>'request_id',
            (v_change->>'created_at')::timestamptz);

    -- As orders.audit._EVENT_INSERT_SQL: the order's next sequence, the transaction's
    -- id, and the notification PostgreSQL delivers when (and only if) it commits.
    INSERT INTO orders_orderevent
        (id, order_id, sequence, type, occurred_at, api_version, data, txid)
    SELECT (v_event->>'id')::uuid, v_order_id, COALESCE(MAX(ev.sequence), 0) + 1,
           v_event->>'type', (v_event->>'occurred_at')::timestamptz,
           v_event->>'api_version', v_event->'data', pg_current_xact_id()::text::bigint
    FROM orders_orderevent ev WHERE ev.order_id = v_order_id;
    PERFORM pg_notify('oms_order_events', v_order_id::text);

    -- The event's outbox messages, if a handler wants them (as core.outbox.outbox_publish:
    -- a repeated dedup key is written once; the pending ones are dispatched after commit).
    IF jsonb_array_length(checkout->'outbox') > 0 THEN
        INSERT INTO core_outboxmessage
            (topic, handler, queue, payload, dedup_key, status, attempts, available_at,
             last_error, created_at, request_id, trace_context)
        SELECT m.message->>'topic', m.message->>'handler', m.message->>'queue',
               m.message->'payload', m.message->>'dedup_key', m.message->>'status', 0,
               (m.message->>'available_at')::timestamptz, '',
               (m.message->>'created_at')::timestamptz, m.message->>'request_id',
               m.message->'trace_context'
        FROM jsonb_array_elements(checkout->'outbox') WITH ORDINALITY AS m(message, position)
        ORDER BY m.position
        ON CONFLICT (dedup_key) DO NOTHING;
        SELECT array_agg(o.id ORDER BY o.id) INTO v_outbox_ids
        FROM core_outboxmessage o
        WHERE o.dedup_key IN (SELECT m.message->>'dedup_key'
                              FROM jsonb_array_elements(checkout->'outbox') AS m(message))
          AND o.status = 'pending';
    END IF;

    -- A paid checkout's payment and its pending authorize operation: the checkpoint
    -- committed before the provider is called (flows.pay), as payments.services.
    -- operations.payment_create writes them.
    IF v_payment IS NOT NULL THEN
        INSERT INTO payments_payment
            (created_at, updated_at, order_id, provider, provider_payment_id, payment_method,
             amount, currency, amount_captured, amount_refunded, status, client_secret,
             decline_code, is_current, order_edit_id)
        VALUES (v_now, v_now, v_order_id, v_payment->>'provider', NULL,
                v_payment->>'payment_method', (v_payment->>'amount')::bigint,
                v_payment->>'currency', 0, 0, v_payment->>'status', '', '', true, NULL)
        RETURNING id INTO v_payment_id;
        INSERT INTO payments_paymentoperation
            (created_at, updated_at, payment_id, kind, amount, status, provider_object_id,
             error_code, error_message, attempts, final, reference)
        VALUES (v_now, v_now, v_payment_id, v_payment->>'operation_kind',
                (v_payment->>'amount')::bigint, v_payment->>'operation_status', '', '', '',
                (v_payment->>'attempts')::integer, false, '')
        RETURNING id INTO v_operation_id;
    END IF;

    -- 3. Last, the hot rows, as inventory.services._RESERVE_SQL: lock the stock rows in
    -- primary-key order and raise reserved where on_hand still covers it (rechecked on
    -- the row's latest version). Any row short: nothing is kept.
    WITH wanted AS (
        SELECT (w.item->>'stock_item_id')::bigint AS stock_item_id,
               (w.item->>'quantity')::integer AS quantity
        FROM jsonb_array_elements(v_stock->'plan') AS w(item)
    ), totals AS (
        SELECT stock_item_id, sum(quantity)::integer AS quantity
        FROM wanted GROUP BY stock_item_id
    ), locked AS MATERIALIZED (
        SELECT s.id FROM inventory_stockitem s
        WHERE s.id IN (SELECT stock_item_id FROM totals)
        ORDER BY s.id
        FOR NO KEY UPDATE
    ), updated AS (
        UPDATE inventory_stockitem s
        SET reserved = s.reserved + t.quantity, updated_at = v_now
        FROM totals t JOIN locked k ON k.id = t.stock_item_id
        WHERE s.id = t.stock_item_id AND s.on_hand >= s.reserved + t.quantity
        RETURNING s.id
    )
    SELECT (SELECT count(*) FROM totals), (SELECT count(*) FROM updated)
    INTO v_wanted, v_updated;
    IF v_updated <> v_wanted THEN
        RAISE EXCEPTION 'stock race lost' USING ERRCODE = 'OMR01';
    END IF;

    WITH reserved AS (
        INSERT INTO inventory_reservation
            (created_at, updated_at, order_line_id, stock_item_id, quantity, status,
             expires_at)
        SELECT v_now, v_now, l.id, (w.item->>'stock_item_id')::bigint,
               (w.item->>'quantity')::integer, v_stock->>'held',
               (v_stock->>'expires_at')::timestamptz
        FROM jsonb_array_elements(v_stock->'plan') WITH ORDINALITY AS w(item, position)
        JOIN orders_orderline l
          ON l.order_id = v_order_id AND l.product_id = (w.item->>'product_id')::bigint
        ORDER BY w.position
        RETURNING id, stock_item_id, quantity
    )
    INSERT INTO inventory_stockmovement
        (stock_item_id, kind, on_hand_delta, reserved_delta, reason, reservation_id,
         actor_id, request_id, created_at)
    SELECT r.stock_item_id, v_stock->>'kind', 0, r.quantity, '', r.id,
           (v_stock->>'actor_id')::integer, v_stock->>'request_id', v_now
    FROM reserved r ORDER BY r.id;

    IF v_payment_id IS NOT NULL THEN
        RETURN ARRAY[v_payment_id, v_operation_id] || v_outbox_ids;
    END IF;
    RETURN v_outbox_ids;
END
$fn$
"""

CHECKOUT_WRITE_FUNCTION_DROP_SQL = "DROP FUNCTION IF EXISTS oms_checkout_write(jsonb)"

# The ordered products (active ones, by SKU) with their stock rows that have units
# available in active warehouses, in StockItem's order (inventory.services.StockRow);
# a product without any has one row with NULL stock columns.
_ROWS_SQL = """
SELECT p.id, p.sku, p.name, p.price, p.currency, p.low_stock_threshold, p.backorder_limit,
       s.id, w.id, w.priority, w.code, s.on_hand - s.reserved
FROM inventory_product p
LEFT JOIN (inventory_stockitem s JOIN inventory_warehouse w
           ON w.id = s.warehouse_id AND w.is_active)
  ON s.product_id = p.id AND s.on_hand > s.reserved
WHERE p.sku = ANY(%s) AND p.is_active
ORDER BY p.id, s.product_id, s.warehouse_id, s.bucket
"""


@dataclass(frozen=True, slots=True)
class CheckoutProduct:
    pk: int
    sku: str
    name: str
    price: int
    currency: str
    low_stock_threshold: int
    backorder_limit: int


def checkout_rows_read(skus: list[str]) -> tuple[dict[str, CheckoutProduct], list[StockRow]]:
    """The active products of these SKUs (by SKU) and their available stock rows: one
    statement."""
    products: dict[str, CheckoutProduct] = {}
    stock: list[StockRow] = []
    with connection.cursor() as cursor:
        cursor.execute(_ROWS_SQL, [skus])
        for row in cursor.fetchall():
            if row[1] not in products:
                products[row[1]] = CheckoutProduct(*row[:7])
            if row[7] is not None:
                stock.append((row[7], row[0], row[8], row[9], row[10], row[11]))
    return products, stock


def checkout_write(checkout: dict[str, Any]) -> list[int]:
    """Write the checkout's rows in one statement (see the module's docstring); return
    the ids of the outbox messages it wrote (to dispatch after commit).

    Raise KeyTaken when the Idempotency-Key exists, ReservationRaceLost when a stock row
    no longer covers its planned units: either way nothing was written. Inside an open
    transaction (tests; a caller's atomic block) it runs in a savepoint, so that its
    failure leaves that transaction usable.
    """
    return _write(checkout)


@dataclass(frozen=True, slots=True)
class PaidCheckoutWritten:
    payment_id: int
    operation_id: int
    outbox_ids: list[int]


def checkout_paid_write(checkout: dict[str, Any]) -> PaidCheckoutWritten:
    """`checkout_write` for a checkout with a `payment` (its payment and authorize
    operation written too): return their ids and the outbox messages' ids. Raise as
    `checkout_write` does."""
    ids = _write(checkout)
    return PaidCheckoutWritten(payment_id=ids[0], operation_id=ids[1], outbox_ids=ids[2:])


def _write(checkout: dict[str, Any]) -> list[int]:
    document = json.dumps(checkout, cls=DjangoJSONEncoder)
    try:
        if connection.in_atomic_block:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT oms_checkout_write(%s::jsonb)", [document])
                outbox_ids = cursor.fetchone()[0]
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT oms_checkout_write(%s::jsonb)", [document])
                outbox_ids = cursor.fetchone()[0]
    except DatabaseError as error:
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        if sqlstate == KEY_TAKEN_SQLSTATE:
            raise KeyTaken() from error
        if sqlstate == STOCK_RACE_LOST_SQLSTATE:
            raise ReservationRaceLost() from error
        raise
    return list(outbox_ids or [])
