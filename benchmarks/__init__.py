"""Checkout benchmark: gunicorn + PostgreSQL, driven over loopback HTTP.

What it does, in order:

1. (Re)creates its own PostgreSQL database (the name must contain "bench"), migrates it
   and seeds warehouses, products, stock and users with API tokens.
2. In-process analysis: SQL statements per checkout (django.test.utils.CaptureQueriesContext,
   for the service alone and for the whole request through the WSGI app), Python vs
   database time per checkout, and with --profile a cProfile of an order_place loop
   (--profile-target request: of the whole POST).
3. Starts the server (--worker-class: gunicorn sync or gthread on config.wsgi, gunicorn
   with uvicorn workers on config.asgi, or granian on either) on a free loopback port,
   warms it up, then drives POST /api/v1/orders/ (own Idempotency-Key each, 1-3 lines),
   GET /api/v1/products/ and GET /api/v1/orders/{id}/ from a closed-loop load generator:
   one separate process with --clients threads, each with one keep-alive HTTP/1.1
   connection over a plain socket. Each phase is bounded by --duration (or
   --read-duration) and --requests.
4. Reports throughput, latency percentiles, status counts, connections opened, CPU per
   request by process group, server worker memory, then checks stock invariants and
   stops the server.
5. The database floor (floor): captures the statements of real checkouts, replays them
   with pgbench against the same database and reports oms checkouts/s over pgbench's
   transactions/s (--no-floor skips it).

With --payment (issue 11's checkout) every checkout, in process, over HTTP, in the soak
and in the floor's capture, sends "payment_method": "pm_card_visa" and counts only as a
201 with its payment authorized for the order's total; the correctness check then also
wants exactly one such payment per order. The run starts a fake provider first and
stops it last (payment_fake: benchmarks.stripe_responder, which answers at once, or with
--payment-fake localstripe the project's fake) and points the server's STRIPE_API_BASE
at it, plus a private redis-server as the Celery broker for the confirmed orders' outbox
messages; both report CPU per request beside the server's and PostgreSQL's. Without
--payment orders are placed unpaid (pending_payment), as before.

The load generator competes with gunicorn and PostgreSQL for the same cores, and other
processes on the machine do too: the "other" CPU column shows how much of the machine
went elsewhere during a phase, and "ceiling" what the measured CPU per request would
allow on otherwise idle cores.

The code under test is the working tree, or with --ref a commit exported by git archive
(useful while others edit the working tree). Settings: config.settings.production
(DEBUG off, persistent connections) with a throwaway DJANGO_SECRET_KEY.

Example (results in benchmarks/RESULTS.md); issue 11's checkout, with payment, over 1,000
SKUs, and the unpaid run the earlier results used:

    .venv/bin/python -m benchmarks --payment --products 1000 --conditional \
        --product-list-cache 5 --api-key-cache redis://127.0.0.1:6379/0 --drop
    .venv/bin/python -m benchmarks --ref HEAD --workers 2 --clients 4 --duration 20 --drop

Modules, one per concern: options (command line), source (working tree or exported commit),
database (create, drop, describe, backends), django_env (Django in this process), seed,
payload (what a checkout sends), db_clock and statements (time and statements per call),
wsgi_client and inprocess (the in-process analysis), profiling (cProfile summary), server
(gunicorn or granian), load (the load generator process), phases and stats (one measured phase),
procfs (CPU and memory readings), machine (versions), http_phases (the HTTP part),
correctness (invariants), floor (pgbench replay), payment_fake and stripe_responder (the
provider of a --payment run; fake_cost measures a fake's CPU per authorization), report
(printing) and cli (the whole run).
"""
