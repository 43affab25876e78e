"""Who performs a use case: a user (through the API or admin) or the system."""

from dataclasses import dataclass

from django.contrib.auth.models import User


@dataclass(frozen=True)
class Actor:
    user: User | None = None
    request_id: str = ""

    @classmethod
    def system(cls, *, request_id: str = "") -> "Actor":
        return cls(user=None, request_id=request_id)

    @classmethod
    def from_request(cls, request: object) -> "Actor":
        user = getattr(request, "user", None)
        return cls(
            user=user if isinstance(user, User) else None,
            request_id=getattr(request, "request_id", ""),
        )

    def require_user(self) -> User:
        if self.user is None:
            raise PermissionError("This use case needs an authenticated user")
        return self.user

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and getattr(self.user, "is_staff", False))

    @property
    def label(self) -> str:
        return self.user.get_username() if self.user is not None else "system"
