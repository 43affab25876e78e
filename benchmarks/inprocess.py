"""In-process analysis: statements per call, DB vs Python time, optional cProfile."""

import argparse
import cProfile
import pstats
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.db_clock import DbClock
from benchmarks.payload import (
    PAYMENT_METHOD,
    SHIPPING_ADDRESS,
    checkout_body,
    payment_authorized,
    random_lines,
)
from benchmarks.payment_fake import PaymentFake
from benchmarks.profiling import profile_summary
from benchmarks.seed import Seeded
from benchmarks.statements import capture
from benchmarks.wsgi_client import InProcessClient


@dataclass
class InProcessReport:
    queries: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    profile_areas: list[tuple[str, float]] = field(default_factory=list)
    profile_text: str = ""
    profile_label: str = ""
    orders_created: int = 0


def inprocess_analysis(
    args: argparse.Namespace, seeded: Seeded, fake: PaymentFake | None = None
) -> InProcessReport:
    """With --payment (`fake` running), every checkout pays: the service is
    flows.place.order_checkout instead of order_place, the request sends payment_method,
    and the fake's CPU per call is reported beside this process's."""
    from django.contrib.auth.models import User

    from core.actors import Actor

    try:
        from flows.place import OrderLineRequest, order_place
    except ImportError:  # a --ref from before the order use cases moved into flows
        from orders.services import (  # type: ignore[attr-defined,no-redef]
            OrderLineRequest,
            order_place,
        )

    from payments.models import Payment

    report = InProcessReport()
    rng = random.Random(args.seed + 7)  # noqa: S311 - test data, not secrets
    user = User.objects.get(pk=seeded.user_ids[0])
    token = seeded.tokens[0]
    actor = Actor(user=user, request_id="benchmark-inprocess")
    client = InProcessClient()
    pool = seeded.skus[: args.hot_products] if args.hot_products else seeded.skus

    payment_method = PAYMENT_METHOD if args.payment else ""
    service_name = "order_checkout" if payment_method else "order_place"

    def place(lines: list[dict[str, Any]]) -> Any:
        report.orders_created += 1
        order_input: dict[str, Any] = {
            "customer": user,
            "email": user.email,
            "shipping_address": dict(SHIPPING_ADDRESS),
            "lines": [OrderLineRequest(line["sku"], line["quantity"]) for line in lines],
            "actor": actor,
        }
        if payment_method:
            from flows.place import order_checkout

            order_id = order_checkout(**order_input, payment_method=payment_method)
            payment = Payment.objects.get(order_id=order_id)
            if payment.status != Payment.Status.AUTHORIZED:
                raise RuntimeError(f"in-process order_checkout left payment {payment.status}")
            return order_id
        return order_place(**order_input)

    created_ids: list[str] = []

    def post(lines: list[dict[str, Any]]) -> tuple[int, Any]:
        status, body = client.request(
            "POST",
            "/api/v1/orders/",
            token=token,
            key=uuid.uuid4().hex,
            body=checkout_body(lines, user.email, payment_method),
        )
        if status != 201 or (payment_method and not payment_authorized(body)):
            raise RuntimeError(f"in-process checkout failed: {status} {body}")
        report.orders_created += 1
        created_ids.append(body["id"])
        return status, body

    # Warm caches (URL resolver, serializers, connection) before counting.
    place(random_lines(rng, pool, args.max_lines))
    counted: list[tuple[str, Callable[[], Any]]] = [
        (f"{service_name}, 1 line", lambda: place([{"sku": pool[0], "quantity": 1}])),
        (
            f"{service_name}, 3 lines",
            lambda: place([{"sku": sku, "quantity": 1} for sku in pool[:3]]),
        ),
        # Not counted: warms the request path.
        ("", lambda: post(random_lines(rng, pool, args.max_lines))),
        ("POST /api/v1/orders/, 1 line", lambda: post([{"sku": pool[0], "quantity": 1}])),
        (
            "POST /api/v1/orders/, 3 lines",
            lambda: post([{"sku": sku, "quantity": 1} for sku in pool[:3]]),
        ),
        ("GET /api/v1/products/", lambda: client.request("GET", "/api/v1/products/", token=token)),
        (
            "GET /api/v1/orders/{id}/",
            lambda: client.request("GET", f"/api/v1/orders/{created_ids[-1]}/", token=token),
        ),
    ]
    for label, run in counted:
        if not label:
            run()
            continue
        statements, kinds = capture(run)
        report.queries[label] = kinds
        if args.show_queries:
            print(f"\n-- {label}: {kinds}")
            for number, statement in enumerate(statements, 1):
                print(f"  {number:2d}. {statement[:220]}")

    def timed(label: str, run: Callable[[], Any]) -> None:
        clock = DbClock()
        iterations = args.inprocess_iterations
        with clock.installed():
            fake_start = fake.cpu_seconds() if fake else 0.0
            start = time.perf_counter()
            cpu_start = time.process_time()
            for _ in range(iterations):
                run()
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            fake_cpu = fake.cpu_seconds() - fake_start if fake else 0.0
        report.timings[label] = {
            "iterations": iterations,
            "wall_ms": 1000 * wall / iterations,
            "db_ms": 1000 * clock.seconds / iterations,
            "commit_ms": 1000 * clock.commit_seconds / iterations,
            "python_ms": 1000 * (wall - clock.seconds) / iterations,
            "process_cpu_ms": 1000 * cpu / iterations,
        }
        if fake is not None:
            report.timings[label]["fake_cpu_ms"] = 1000 * fake_cpu / iterations

    def counted_calls(label: str, run: Callable[[], Any], iterations: int = 50) -> None:
        """Python function calls per call: unlike CPU time, the same on a busy machine."""
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(iterations):
            run()
        profiler.disable()
        report.timings[label]["python_calls"] = pstats.Stats(profiler).total_calls / iterations  # type: ignore[attr-defined]

    if args.inprocess_iterations > 0:
        service = lambda: place(random_lines(rng, pool, args.max_lines))  # noqa: E731
        request = lambda: post(random_lines(rng, pool, args.max_lines))  # noqa: E731
        timed(f"{service_name} (service)", service)
        timed("POST /api/v1/orders/ (WSGI)", request)
        counted_calls(f"{service_name} (service)", service)
        counted_calls("POST /api/v1/orders/ (WSGI)", request)

    reads_inprocess(args, seeded, client, token, created_ids, report)

    if args.profile:
        timer = time.process_time if args.profile_clock == "cpu" else time.perf_counter
        profiler = cProfile.Profile(timer)
        lines_list = [random_lines(rng, pool, args.max_lines) for _ in range(args.profile)]
        run_one: Callable[[list[dict[str, Any]]], Any] = (
            place if args.profile_target == "service" else post
        )
        profiler.enable()
        for lines in lines_list:
            run_one(lines)
        profiler.disable()
        if args.profile_dump:
            profiler.dump_stats(args.profile_dump)
        report.profile_areas, report.profile_text = profile_summary(
            profiler, args.profile, args.profile_top, args.source_root
        )
        report.profile_label = (
            f"{service_name if args.profile_target == 'service' else 'POST /api/v1/orders/'}"
            f" x{args.profile}, {args.profile_clock} clock"
        )
    return report


def reads_inprocess(
    args: argparse.Namespace,
    seeded: Seeded,
    client: InProcessClient,
    token: str,
    created_ids: list[str],
    report: InProcessReport,
) -> None:
    """Statements, time and Python calls per read request through the WSGI app: order
    detail, the history customer's first page of orders, the product list; plain and
    conditional (If-None-Match with the ETag just sent: a 304)."""

    def etag_of(path: str, read_token: str) -> str:
        client.request("GET", path, token=read_token)
        return client.last_headers.get("ETag", "")

    detail = f"/api/v1/orders/{created_ids[-1]}/"
    reads: list[tuple[str, Callable[[], Any]]] = [
        ("GET /api/v1/products/", lambda: client.request("GET", "/api/v1/products/", token=token)),
        ("GET /api/v1/orders/{id}/", lambda: client.request("GET", detail, token=token)),
    ]
    detail_tag = etag_of(detail, token)
    products_tag = etag_of("/api/v1/products/", token)
    if detail_tag:  # a --ref from before ETags sends none
        reads.append(
            (
                "GET /api/v1/orders/{id}/ 304",
                lambda: client.request("GET", detail, token=token, if_none_match=detail_tag),
            )
        )
    if products_tag:
        reads.append(
            (
                "GET /api/v1/products/ 304",
                lambda: client.request(
                    "GET", "/api/v1/products/", token=token, if_none_match=products_tag
                ),
            )
        )
    if seeded.history_token:
        history = seeded.history_token
        label = f"GET /api/v1/orders/ ({seeded.history_orders} orders)"
        reads.append((label, lambda: client.request("GET", "/api/v1/orders/", token=history)))
        page_tag = etag_of("/api/v1/orders/", history)
        if page_tag:  # a --ref from before the first page's ETag sends none
            reads.append(
                (
                    label + " 304",
                    lambda: client.request(
                        "GET", "/api/v1/orders/", token=history, if_none_match=page_tag
                    ),
                )
            )
    for label, run in reads:
        run()  # warm
        status, _ = run()
        if status not in (200, 304):
            raise RuntimeError(f"in-process {label} answered {status}")
        _, kinds = capture(run)
        report.queries[label] = kinds
        if args.inprocess_iterations > 0:
            iterations = max(args.inprocess_iterations // 2, 1)
            clock = DbClock()
            with clock.installed():
                start = time.perf_counter()
                cpu_start = time.process_time()
                for _ in range(iterations):
                    run()
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                run()
            profiler.disable()
            report.timings[label + " (WSGI)"] = {
                "iterations": iterations,
                "wall_ms": 1000 * wall / iterations,
                "db_ms": 1000 * clock.seconds / iterations,
                "commit_ms": 1000 * clock.commit_seconds / iterations,
                "python_ms": 1000 * (wall - clock.seconds) / iterations,
                "process_cpu_ms": 1000 * cpu / iterations,
                "python_calls": pstats.Stats(profiler).total_calls / 20,  # type: ignore[attr-defined]
            }
