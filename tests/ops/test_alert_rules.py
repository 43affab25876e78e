"""The alert rules and the dashboard beside them: promtool checks the rules and runs
their unit tests on synthetic series; every expression names only metrics oms serves."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import metrics_text

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "oms-dashboard.json"
METRIC_NAME = re.compile(r"\boms_[a-zA-Z0-9_]+")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test installs it (Debian's prometheus)"
    return subprocess.run(
        [promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture
def served_sample_names(db: None) -> set[str]:
    """Every sample name oms serves: its instruments (with their type's suffixes) and the
    families the scrape-time collectors yield."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("oms_"):
            names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    for family in text_string_to_metric_families(metrics_text().decode()):
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def test_alert_rules_are_valid():
    checked = _promtool("check", "rules", RULES.name)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_alert_rules_pass_their_unit_tests():
    tested = _promtool("test", "rules", RULE_TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_quiet():
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}

    assert names == {
        "OrderPlacementDropHourOverHour",
        "OrderPlacementDropWeekOverWeek",
        "CheckoutLatencyP99High",
        "ApiServerErrorRatioHigh",
        "OutboxMessageStuck",
        "DeadLettersGrowing",
        "CircuitBreakerOpen",
        "NoWorkerHeartbeats",
        "WebhookDeliveryLagHigh",
    }
    assert firing == names
    assert quiet == names


def test_alert_rules_name_only_served_metrics(served_sample_names):
    used = {name for rule in _alerts() for name in METRIC_NAME.findall(rule["expr"])}

    assert used
    assert used <= served_sample_names, used - served_sample_names


def test_dashboard_parses_and_names_only_served_metrics(served_sample_names):
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()

    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert used <= served_sample_names, used - served_sample_names
    # What the dashboard is for: orders/min, p50/p99, errors by code, outbox lag, breakers.
    for needed in (
        "oms_orders_placed_total",
        "oms_checkout_duration_seconds_bucket",
        "oms_api_errors_total",
        "oms_outbox_oldest_message_age_seconds",
        "oms_circuit_breaker_state",
    ):
        assert needed in used
    for words in ("per minute", "p50", "p99", "by code", "outbox", "circuit breaker"):
        assert words in titles
