"""The admin in a real browser: Debian's chromium driven by playwright against the live
Django server and the test database. Staff log in, find an order by its number, ship it
and refund part of it through the confirmation pages (the fake Stripe server captures and
refunds), and read both in the history; a support user opens a return from the order
page and is refused a stock adjustment.
Screenshots: var/test-artifacts/admin/."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright

from inventory.models import StockItem
from orders.models import Order
from orders.states import OrderStatus
from payments.models import Payment
from tests.admin.conftest import PASSWORD

pytest_plugins = ("tests.support.fake_stripe", "tests.support.fake_warehouse")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "admin"


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page in headless Debian chromium. Playwright's sync API runs an event loop in
    this thread while it is open: the test touches the database before and after."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def confirm(page: Page, transition: str, reason: str, amount: str | None = None) -> None:
    page.click(f"a.order-action[data-transition={transition}]")
    expect(page.locator("p.what-happens")).to_be_visible()
    if amount is not None:
        page.fill("#id_amount", amount)
    page.fill("#id_reason", reason)
    page.click("input[name=_confirm]")


def test_staff_find_ship_and_refund_an_order_and_support_may_not_adjust_stock(
    live_server: Any,
    paid_order: Callable[..., Order],
    staff_in: Callable[..., Any],
) -> None:
    # Given an order of 39.98 EUR paid at the fake provider and routed to a warehouse,
    # a warehouse-and-finance user and a support user
    order = paid_order(routed=True)
    clerk = staff_in("warehouse", "finance")
    agent = staff_in("support")
    line = order.lines.get()
    item = StockItem.objects.get(product__sku=line.sku)
    with chromium_page() as page:
        # When the clerk logs in and finds the order by its number
        log_in(page, live_server.url, clerk.username)
        page.goto(f"{live_server.url}/admin/orders/order/")
        page.fill("#searchbar", order.number)
        page.press("#searchbar", "Enter")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        page.click(f"#result_list a:text('{order.number}')")
        page.screenshot(path=ARTIFACTS / "1-order.png", full_page=True)

        # ...ships it, then refunds 12.34 of it, each confirmed with a reason
        confirm(page, "ship", "picked and packed by hand")
        expect(page.locator(".messagelist")).to_contain_text("ship, now shipped")
        confirm(page, "refund", "one gear dented", amount="12.34")
        expect(page.locator(".messagelist")).to_contain_text("refunded 12.34 EUR, now shipped")

        # Then the history shows both, with who and why
        history = page.locator("table.order-history")
        expect(history).to_contain_text("routed → shipped (ship)")
        expect(history).to_contain_text("picked and packed by hand")
        expect(history).to_contain_text("Refunded 12.34 EUR")
        expect(history).to_contain_text("one gear dented")
        expect(history).to_contain_text(clerk.username)
        page.screenshot(path=ARTIFACTS / "2-shipped-and-refunded.png", full_page=True)

        # When the support user opens a return of one unit from the order page
        page.context.clear_cookies()
        log_in(page, live_server.url, agent.username)
        page.goto(f"{live_server.url}/admin/orders/order/{order.pk}/change/")
        page.click("a.order-form[data-form=return_open]")
        page.fill(f"#id_line_{line.pk}", "1")
        page.fill("#id_reason", "too big")
        page.click("input[name=_confirm]")
        expect(page.locator(".messagelist")).to_contain_text("now requested")
        # Then it is listed with the buttons support may use on it
        expect(page.locator("#return-actions a.return-action")).to_have_count(3)
        page.screenshot(path=ARTIFACTS / "3-return-opened.png", full_page=True)

        # When the support user tries to adjust stock
        stock_page = page.goto(f"{live_server.url}/admin/inventory/stockitem/{item.pk}/")
        adjust = page.goto(f"{live_server.url}/admin/inventory/stockitem/{item.pk}/adjust/")
        page.screenshot(path=ARTIFACTS / "4-support-refused-stock-adjustment.png", full_page=True)

    # Then they may look at the stock but the adjustment is refused
    assert stock_page is not None
    assert adjust is not None
    assert (stock_page.status, adjust.status) == (200, 403)
    order.refresh_from_db()
    payment = Payment.objects.get(order=order)
    assert order.status == OrderStatus.SHIPPED
    assert (payment.amount_captured, payment.amount_refunded) == (3998, 1234)
    assert order.returns.get().lines.get().quantity == 1
