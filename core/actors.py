"""Who performs a use case: a user (through the API or admin) or the system.

A key allowed to act for customers (a storefront backend) that names one makes an actor
whose `user` is that customer and whose `via` is the key's owner: use cases see the
customer, so they scope orders to them unchanged, and the audit label names both.
"""

from dataclasses import dataclass

from django.contrib.auth.models import User

from core import log_context


@dataclass(frozen=True)
class Actor:
    user: User | None = None
    request_id: str = ""
    via: User | None = None

    @classmethod
    def system(cls, *, request_id: str = "") -> "Actor":
        """The system, acting for the request that caused the work when one did (a worker
        handling an outbox message carries the request's id)."""
        return cls(user=None, request_id=request_id or log_context.current("request_id"))

    @classmethod
    def from_request(cls, request: object) -> "Actor":
        user = getattr(request, "user", None)
        request_id = getattr(request, "request_id", "")
        if not isinstance(user, User):
            return cls(user=None, request_id=request_id)
        # The authentication's credential names the customer a key acts for, if any.
        customer = getattr(getattr(request, "auth", None), "on_behalf_of", None)
        if isinstance(customer, User):
            return cls(user=customer, via=user, request_id=request_id)
        return cls(user=user, request_id=request_id)

    def require_user(self) -> User:
        if self.user is None:
            raise PermissionError("This use case needs an authenticated user")
        return self.user

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and getattr(self.user, "is_staff", False))

    @property
    def label(self) -> str:
        if self.user is None:
            return "system"
        if self.via is not None:
            # Audit rows keep 150 characters, a username's own limit.
            return f"{self.via.get_username()} for {self.user.get_username()}"[:150]
        return self.user.get_username()
