"""A fake warehouse fulfilment service on loopback (dev, demo and tests only).

    python -m fakes.warehouse --port 8430 --secret S [--host 127.0.0.1]
        [--ship-after 2] [--deliver-after 4] [--reject-skus A,B] [--no-auto-callbacks]
        [--hang-seconds 30] [--callback-attempts 5] [--callback-backoff 0.5] [--verbose]

A threaded stdlib HTTP server. It binds a loopback address only (``--port 0`` picks a
free port), keeps all state in memory, prints one ready line on stdout once it accepts
connections::

    fake-warehouse ready http://127.0.0.1:8430

and exits with status 0 on SIGTERM or SIGINT. In a test, run it in a thread instead:
``FakeWarehouse(secret=...).start()`` ... ``.stop()`` (or ``with FakeWarehouse(...)``).

The modules: ``wire`` (paths, headers, answers, request bodies), ``behaviour`` (the
knobs and their checks), ``service`` (``FakeWarehouse``: state and decisions),
``callbacks`` (shipments and their callbacks to oms), ``server`` (HTTP server and
handler), ``control`` (the control API and ``ControlClient``), ``cli`` (``main``).

Fulfilment requests, ``POST /fulfilment-requests`` (what ``HttpWarehouseGateway`` sends):

* ``X-OMS-Signature`` must verify with the secret (``core.signing``, 300 s
  tolerance), else 401 ``{"status": "error", "code": "signature_invalid"}``.
* ``Idempotency-Key`` is required (400). A key seen before with the same JSON body gets
  the stored answer again, with ``Idempotent-Replayed: true``: not a new fulfilment. The
  same key with another body gets 400 ``idempotency_key_reused``. Only decisions are
  stored (accepted, rejected, withdrawn, refused); 400, 401 and 500 are not.
* A body that is not a fulfilment request gets 400 ``invalid_request``.
* A request whose ``request_id`` was withdrawn gets 409 ``{"status": "rejected", "code":
  "withdrawn", ...}``, whatever its key: a delayed request cannot resurrect it.
* A request with a line whose SKU is in ``reject_skus`` gets 409 ``{"status":
  "rejected", "code": "out_of_stock", "reason": ...}``. Otherwise 201 ``{"status":
  "accepted", "shipment_reference": "shp_...", "request_id": ...}``.

Withdrawals, ``POST /fulfilment-requests/<request_id>/withdraw`` with ``{"request_id",
"order_number", "reason"}`` (``HttpWarehouseGateway.withdraw``; oms asks when the
customer cancels a routed order):

* Signed, keyed and answered 401 / 400 exactly as fulfilment requests, keys included
  (a replayed key gets the stored answer); a body whose ``request_id`` is not the one in
  the path gets 400 ``invalid_request``.
* 200 ``{"status": "withdrawn", "request_id": ...}``: the warehouse will not ship it.
  Its shipment (``state: "withdrawn"``) sends no more callbacks. Also for a request the
  warehouse has never seen: the id is remembered and a later fulfilment request with it
  is rejected (above). Withdrawing again is 200 again.
* 409 ``{"status": "refused", "code": "already_shipped", "reason": ...}``: too late, the
  parcel has left. It leaves when the fake starts reporting it shipped (the first
  ``shipped`` callback attempt), so an answer of 200 always means no ``shipped``
  callback will ever come.

Callbacks: ``ship_after`` seconds after accepting, the fake POSTs ``{"event":
"shipped", "event_id", "shipment_reference", "request_id", "order_number",
"warehouse_code", "carrier": "DHL", "tracking_number", "occurred_at"}`` to the request's
``callback_url``; ``deliver_after`` seconds after the shipped callback succeeded, the same
with ``"event": "delivered"``. Each is signed with the same secret (``X-OMS-Signature``)
and carries ``X-Warehouse-Code``. A callback that fails (connection error, timeout,
non-2xx) is retried with the same body and ``event_id``, re-signed, up to
``callback_attempts`` times with exponential backoff from ``callback_backoff`` seconds;
when every attempt fails the shipment stops there (``state: "callback_failed"``) and
``delivered`` is never sent, so ``shipped`` always comes first.

Control API (JSON, no authentication, loopback only; ``ControlClient`` wraps it):

* ``GET /_control/behaviour``; ``POST /_control/behaviour`` with any of ``{"mode":
  "accept" | "reject" | "error500" | "hang", "count": N}`` (the next N fulfilment
  requests, then back to accept; no count: until changed), ``{"reject_skus": [...]}``,
  ``{"ship_after": s, "deliver_after": s, "auto_callbacks": bool}``, ``hang_seconds``,
  ``callback_attempts``, ``callback_backoff``, ``callback_timeout``. Answers the whole
  behaviour. ``reject``: every new request is rejected (``cannot_fulfil``).
  ``error500``: answer 500 before doing anything (not carried out, nothing stored).
  ``hang``: carry the request out as usual (it is stored, a shipment may start), then
  withhold the answer for ``hang_seconds`` and close the connection: the client cannot
  tell what happened, and a retry with the same key gets the stored answer.
  ``{"withdraw_mode": "allow" | "refuse" | "error500" | "hang"}`` answers withdrawals
  (until changed): ``allow`` as above; ``refuse``: 409 ``already_shipped`` whatever the
  state; ``error500`` and ``hang`` as for requests.
* ``GET /_control/requests``: every fulfilment request seen, oldest first: ``seq``,
  ``idempotency_key``, ``body`` (parsed JSON, or text), ``signature_ok``,
  ``signature_error``, ``mode``, ``status`` (the answer's status), ``answered`` (false
  when withheld), ``duplicate``, ``shipment_reference``. ``GET /_control/withdrawals``:
  every withdraw call, the same fields but ``request_id`` (from the path) and ``result``
  (``withdrawn``, ``refused`` or null) for ``shipment_reference``.
* ``GET /_control/shipments``: every shipment and its ``state`` (accepted, shipped,
  delivered, callback_failed, withdrawn). ``GET /_control/callbacks``: every callback attempt.
* ``POST /_control/shipments/<reference>/shipped`` (or ``/delivered``): send that callback
  now, with retries, and answer how it went; meant for ``auto_callbacks: false``.
* ``POST /_control/shipments/<reference>/returns/<return_id>`` with ``{"lines": [{"sku",
  "disposition": "restock" | "dispose"}]}``: units of that shipment's order came back
  here; POST ``{"event": "return_received", "event_id", "return_id", "order_number",
  "warehouse_code", "lines", "occurred_at"}`` to the shipment's ``callback_url``, signed
  and retried like the others, and answer ``{"delivered": bool, "return_id"}``.
* ``POST /_control/reset``: forget requests, keys, shipments, callbacks and withdrawals,
  cancel pending callbacks and restore the start-up behaviour.
"""

from fakes.warehouse.behaviour import MODES, WITHDRAW_MODES, Behaviour
from fakes.warehouse.callbacks import CARRIER, EVENTS
from fakes.warehouse.cli import READY_PREFIX, main
from fakes.warehouse.control import ControlClient
from fakes.warehouse.server import SOCKET_TIMEOUT_SECONDS
from fakes.warehouse.service import FakeWarehouse
from fakes.warehouse.wire import (
    CONTROL_PREFIX,
    IDEMPOTENCY_KEY_HEADER,
    MAX_BODY_BYTES,
    REQUEST_PATH,
    SIGNATURE_TOLERANCE_SECONDS,
    WAREHOUSE_CODE_HEADER,
)

__all__ = [
    "CARRIER",
    "CONTROL_PREFIX",
    "EVENTS",
    "IDEMPOTENCY_KEY_HEADER",
    "MAX_BODY_BYTES",
    "MODES",
    "READY_PREFIX",
    "REQUEST_PATH",
    "SIGNATURE_TOLERANCE_SECONDS",
    "SOCKET_TIMEOUT_SECONDS",
    "WAREHOUSE_CODE_HEADER",
    "WITHDRAW_MODES",
    "Behaviour",
    "ControlClient",
    "FakeWarehouse",
    "main",
]
