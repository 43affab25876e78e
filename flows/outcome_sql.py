"""The statement that records an authorized paid checkout (flows.payment_outcomes
`order_confirm_authorized_written`): one data-modifying WITH statement, sent inside the
outcome's transaction after the order, payment and operation are locked
(flows.lock_objects.operation_lock), with every value decided in Python beforehand.

It writes, from one `jsonb` document (%s): the authorize operation settled; the payment
authorized with its PaymentIntent id; the order's status and updated_at; the audit row
(orders_orderstatuschange); the order's events (`payment.authorized`, then
`order.confirmed`: the order's next sequences, the transaction's id, and the
`oms_order_events` notification, as orders.audit writes them); the outbox messages
(each event's delivery, then the new status's work, whose payload and dedup key name the
audit row's id, as orders.audit `order_status_change_record` does; a repeated dedup key
is written once); and, when the document carries one, the Idempotency-Key completed
with its response if this request still holds its claim (as core.idempotency
`_complete`). Each UPDATE names the row's id and the status it leaves (the state
machine's source), so a row not as decided is not written, and counted.

It returns the rows updated of operation, payment, order and key, and the ids of the
outbox messages written.
"""

OUTCOME_AUTHORIZED_WRITE_SQL = """
WITH doc AS (SELECT %s::jsonb AS d),
operation AS (
    UPDATE payments_paymentoperation op
    SET status = d->'operation'->>'status',
        provider_object_id = d->'operation'->>'provider_object_id',
        error_code = '', error_message = '',
        updated_at = (d->>'now')::timestamptz
    FROM doc
    WHERE op.id = (d->'operation'->>'id')::bigint AND op.status = d->'operation'->>'from_status'
    RETURNING op.id
),
payment AS (
    UPDATE payments_payment p
    SET status = d->'payment'->>'status',
        provider_payment_id = d->'payment'->>'provider_payment_id',
        client_secret = '',
        updated_at = (d->>'now')::timestamptz
    FROM doc
    WHERE p.id = (d->'payment'->>'id')::bigint AND p.status = d->'payment'->>'from_status'
    RETURNING p.id
),
placed AS (
    UPDATE orders_order o
    SET status = d->'order'->>'status', updated_at = (d->>'now')::timestamptz
    FROM doc
    WHERE o.id = (d->'order'->>'id')::uuid AND o.status = d->'order'->>'from_status'
    RETURNING o.id
),
change AS (
    INSERT INTO orders_orderstatuschange
        (order_id, from_status, to_status, transition, actor_id, actor_label, reason,
         request_id, created_at)
    SELECT (d->'order'->>'id')::uuid, d->'change'->>'from_status', d->'change'->>'to_status',
           d->'change'->>'transition', (d->'change'->>'actor_id')::integer,
           d->'change'->>'actor_label', d->'change'->>'reason', d->'change'->>'request_id',
           (d->>'now')::timestamptz
    FROM doc
    RETURNING id
),
events AS (
    INSERT INTO orders_orderevent
        (id, order_id, sequence, type, occurred_at, api_version, data, txid)
    SELECT (e.event->>'id')::uuid, (d->'order'->>'id')::uuid, last.sequence + e.position,
           e.event->>'type', (e.event->>'occurred_at')::timestamptz, e.event->>'api_version',
           e.event->'data', pg_current_xact_id()::text::bigint
    FROM doc,
         (SELECT COALESCE(MAX(ev.sequence), 0) AS sequence FROM orders_orderevent ev, doc
          WHERE ev.order_id = (d->'order'->>'id')::uuid) AS last,
         jsonb_array_elements(d->'events') WITH ORDINALITY AS e(event, position)
    ORDER BY e.position
    RETURNING order_id
),
outbox AS (
    INSERT INTO core_outboxmessage
        (topic, handler, queue, payload, dedup_key, status, attempts, available_at,
         last_error, created_at, request_id, trace_context)
    SELECT m.message->>'topic', m.message->>'handler', m.message->>'queue',
           CASE WHEN (m.message->>'names_change')::boolean
                THEN m.message->'payload' || jsonb_build_object('status_change_id', change.id)
                ELSE m.message->'payload' END,
           left(m.message->>'dedup_key'
                || CASE WHEN (m.message->>'names_change')::boolean
                        THEN change.id::text ELSE '' END, 255),
           m.message->>'status', 0, (m.message->>'available_at')::timestamptz, '',
           (m.message->>'created_at')::timestamptz, m.message->>'request_id',
           m.message->'trace_context'
    FROM doc, change, jsonb_array_elements(d->'outbox') WITH ORDINALITY AS m(message, position)
    ORDER BY m.position
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id
),
completed AS (
    UPDATE core_idempotencykey k
    SET status = 'completed',
        response_status = (d->'key'->>'response_status')::smallint,
        response_body = d->'key'->'response_body',
        completed_at = (d->'key'->>'completed_at')::timestamptz,
        locked_at = NULL
    FROM doc
    WHERE d->'key' <> 'null'::jsonb
      AND k.user_id = (d->'key'->>'user_id')::integer AND k.key = d->'key'->>'key'
      AND k.status = 'in_progress' AND k.locked_at = (d->'key'->>'locked_at')::timestamptz
    RETURNING k.id
)
SELECT (SELECT count(*) FROM operation), (SELECT count(*) FROM payment),
       (SELECT count(*) FROM placed), (SELECT count(*) FROM completed),
       (SELECT array_agg(id ORDER BY id) FROM outbox),
       (SELECT count(*) FROM (SELECT pg_notify('oms_order_events', order_id::text)
                              FROM events) AS notified)
"""
