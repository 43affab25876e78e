"""How the fake answers, and the checks on every change made through the control API."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

MODES = ("accept", "reject", "error500", "hang")
WITHDRAW_MODES = ("allow", "refuse", "error500", "hang")


@dataclass
class Behaviour:
    """How the fake answers; every field can be changed at run time."""

    mode: str = "accept"
    count: int | None = None  # requests left in ``mode``; None: until changed
    reject_skus: list[str] = field(default_factory=list)
    ship_after: float = 2.0
    deliver_after: float = 4.0
    auto_callbacks: bool = True
    hang_seconds: float = 30.0
    callback_attempts: int = 5
    callback_backoff: float = 0.5
    callback_timeout: float = 5.0
    withdraw_mode: str = "allow"

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.count,
            "reject_skus": list(self.reject_skus),
            "ship_after": self.ship_after,
            "deliver_after": self.deliver_after,
            "auto_callbacks": self.auto_callbacks,
            "hang_seconds": self.hang_seconds,
            "callback_attempts": self.callback_attempts,
            "callback_backoff": self.callback_backoff,
            "callback_timeout": self.callback_timeout,
            "withdraw_mode": self.withdraw_mode,
        }

    def changed(self, changes: dict[str, Any]) -> Behaviour:
        """Return a copy with ``changes`` applied; ValueError names a bad one."""
        unknown = set(changes) - set(self.as_json())
        if unknown:
            raise ValueError(f"unknown behaviour fields: {', '.join(sorted(unknown))}")
        if "count" in changes and "mode" not in changes:
            raise ValueError("count applies to a mode: send mode with it")
        updated = replace(self, reject_skus=list(self.reject_skus))
        for name, value in changes.items():
            setattr(updated, name, _validated(name, value))
        if "mode" in changes and "count" not in changes:
            updated.count = None
        if updated.mode == "accept":
            updated.count = None
        return updated


def _validated(name: str, value: Any) -> Any:
    if name == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        return value
    if name == "withdraw_mode":
        if value not in WITHDRAW_MODES:
            raise ValueError(f"withdraw_mode must be one of {', '.join(WITHDRAW_MODES)}")
        return value
    if name == "count":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("count must be a positive integer or null")
        return value
    if name == "reject_skus":
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise ValueError("reject_skus must be a list of SKUs")
        return list(value)
    if name == "auto_callbacks":
        if not isinstance(value, bool):
            raise ValueError("auto_callbacks must be true or false")
        return value
    if name == "callback_attempts":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("callback_attempts must be a positive integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds")
    if name == "callback_timeout" and value == 0:
        raise ValueError("callback_timeout must be positive")
    return float(value)
