"""Idempotency-Key handling: run a use case once per (user, key), replay its response after.

Single-step use cases (atomic=True): the claim, the writes and the stored response
commit in one transaction (one commit per request), so a crash mid-request leaves
nothing to double. A concurrent request with the same key waits for that transaction on
the key's unique index, then replays its response (or runs, if it rolled back).

Multi-step use cases (atomic=False, e.g. reserve stock, then call the payment provider,
then record the outcome): the key is claimed in its own committed write before the use
case runs (or, `claimed_by_statement`, by the use case's first statement, with what it
creates: `StatementClaim`), so concurrent requests with the same key see it and get 409
request_in_progress. Each step commits on its own, and the first records what it
created with `IdempotencyContext.checkpoint`. A retry of a key whose request failed with
a 5xx, or died, resumes from that checkpoint instead of creating a second order. A claim
whose request died is taken over after IDEMPOTENCY_LOCK_TIMEOUT.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import (
    ConcurrentUpdate,
    DomainError,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    RequestInProgress,
)
from core.models import IdempotencyKey
from core.pruning import idempotency_keys_prune
from core.text import json_storable

IDEMPOTENCY_KEY_MAX_LENGTH = 255

# Errors that describe this attempt's circumstances, not its outcome: never stored.
_TRANSIENT_ERRORS = (RequestInProgress, ConcurrentUpdate)


class IdempotencyContext:
    """What a running operation knows about its key."""

    def __init__(self, record: IdempotencyKey) -> None:
        self._record = record

    @property
    def resource_id(self) -> str:
        """The checkpointed resource of an earlier attempt with this key, or ''."""
        return self._record.resource_id

    def checkpoint(self, resource_id: str) -> None:
        """Record what this attempt created. Call inside the transaction that creates it."""
        IdempotencyKey.objects.filter(pk=self._record.pk).update(resource_id=resource_id)
        self._record.resource_id = resource_id


@dataclass(frozen=True)
class CompletedKey:
    """A key a single-statement operation writes itself, already completed with its
    response, in the statement that writes the operation's rows (see `idempotent_execute`,
    `written`). The claim then costs no statement of its own."""

    user_id: int
    key: str
    method: str
    path: str
    fingerprint: str
    status: int

    def row(self, *, body: Any, now: datetime) -> dict[str, Any]:
        """The key's columns as JSON, as `_complete` leaves them: completed, unlocked,
        with the response (made storable)."""
        stamp = now.isoformat()
        return {
            "user_id": self.user_id,
            "key": self.key,
            "request_method": self.method,
            "request_path": self.path,
            "request_fingerprint": self.fingerprint,
            "status": IdempotencyKey.Status.COMPLETED.value,
            "resource_id": "",
            "response_status": self.status,
            "response_body": _storable(body),
            "created_at": stamp,
            "completed_at": stamp,
        }


class StatementClaim:
    """The key of a multi-step operation (atomic=False) whose first step is one statement
    that claims the key itself: in progress, locked by this request and checkpointed
    with what the statement creates, in that statement's transaction (see
    `idempotent_execute`, `written`). The claim then costs no statement or commit of its
    own, and a crash after it leaves a key that resumes from the checkpoint."""

    def __init__(self, key: CompletedKey) -> None:
        self.key = key
        self.record: IdempotencyKey | None = None
        # Set by `stored`: the operation completed the key itself, with its response.
        self.completed_in_operation = False

    def row(self, *, resource_id: str, now: datetime) -> dict[str, Any]:
        """The key's columns as JSON, as `_claim_insert` and a checkpoint leave them."""
        stamp = now.isoformat()
        return {
            "user_id": self.key.user_id,
            "key": self.key.key,
            "request_method": self.key.method,
            "request_path": self.key.path,
            "request_fingerprint": self.key.fingerprint,
            "status": IdempotencyKey.Status.IN_PROGRESS.value,
            "locked_at": stamp,
            "resource_id": resource_id,
            "response_status": None,
            "response_body": None,
            "created_at": stamp,
            "completed_at": None,
        }

    def claimed(self, *, resource_id: str, now: datetime) -> None:
        """The statement that wrote `row(resource_id=..., now=...)` committed: the key
        is this request's, to complete or release as any claimed key."""
        self.record = IdempotencyKey(
            user_id=self.key.user_id,
            key=self.key.key,
            request_method=self.key.method,
            request_path=self.key.path,
            request_fingerprint=self.key.fingerprint,
            status=IdempotencyKey.Status.IN_PROGRESS,
            locked_at=now,
            resource_id=resource_id,
        )

    def completion(self, *, body: Any) -> dict[str, Any]:
        """The claimed key's completion with `body` (and the key's status) as JSON-ready
        columns, as `_complete` writes it (only while this request still holds the
        claim: user, key, in progress, and its `locked_at`), for an operation that
        completes it in its own statement, with the outcome it records, and then
        reports that with `stored`. Call after `claimed`."""
        if self.record is None or self.record.locked_at is None:
            raise RuntimeError("The key is not claimed.")
        return {
            "user_id": self.key.user_id,
            "key": self.key.key,
            "locked_at": self.record.locked_at.isoformat(),
            "response_status": self.key.status,
            "response_body": _storable(body),
            "completed_at": timezone.now().isoformat(),
        }

    def stored(self) -> None:
        """The statement with `completion(...)` committed and completed the key: nothing
        is left to write for it."""
        self.completed_in_operation = True


class KeyTaken(Exception):  # noqa: N818 - an outcome, not a failure
    """The operation's statement found the key already there (stored by an earlier
    request, or by a concurrent one that committed first) and wrote nothing."""


@dataclass(frozen=True)
class IdempotentResult:
    status: int
    body: Any
    replayed: bool


def idempotency_key_validate(key: str | None) -> str:
    if key is None or key == "":
        raise IdempotencyKeyMissing()
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise IdempotencyKeyInvalid()
    return key


def request_fingerprint(*, method: str, path: str, payload: Any) -> str:
    canonical = json.dumps(
        {"method": method, "path": path, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim_insert(
    *, user: User, key: str, method: str, path: str, fingerprint: str
) -> IdempotencyKey:
    """Insert the key, in progress. IntegrityError when it exists (or, inside a
    transaction, when a concurrent request's claim of it commits meanwhile)."""
    return IdempotencyKey.objects.create(
        user=user,
        key=key,
        request_method=method,
        request_path=path,
        request_fingerprint=fingerprint,
        status=IdempotencyKey.Status.IN_PROGRESS,
        locked_at=timezone.now(),
    )


def _claim_existing(*, user: User, key: str, fingerprint: str) -> tuple[IdempotencyKey, bool]:
    """The key exists: return it and whether this request now owns it (a claim whose
    request died, taken over), or raise."""
    now = timezone.now()
    record = IdempotencyKey.objects.get(user=user, key=key)
    if record.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if record.status == IdempotencyKey.Status.COMPLETED:
        return record, False
    stale_before: datetime = now - settings.IDEMPOTENCY_LOCK_TIMEOUT
    if record.locked_at is None or record.locked_at < stale_before:
        taken_over = IdempotencyKey.objects.filter(
            pk=record.pk,
            status=IdempotencyKey.Status.IN_PROGRESS,
            locked_at=record.locked_at,
        ).update(locked_at=now)
        if taken_over:
            record.locked_at = now
            return record, True
    raise RequestInProgress()


def _claim(
    *, user: User, key: str, method: str, path: str, fingerprint: str
) -> tuple[IdempotencyKey, bool]:
    """Claim the key for this request. Return the row and whether this request owns it."""
    try:
        # Insert first: a new key (the usual case) costs one statement, not two.
        with transaction.atomic():
            record = _claim_insert(
                user=user, key=key, method=method, path=path, fingerprint=fingerprint
            )
        return record, True
    except IntegrityError:
        return _claim_existing(user=user, key=key, fingerprint=fingerprint)


def _execute_in_one_transaction(
    *,
    user: User,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    operation: Callable[[IdempotencyContext], tuple[int, Any]],
) -> IdempotentResult | None:
    """Claim the key, run the operation and store its response in one transaction: one
    commit for the whole request. Return None when the key already exists.

    The claim is not visible to others until it commits with the operation's writes, so
    a concurrent request with the same key waits on the key's unique index until this
    one ends, then replays what it stored (or, when it rolled back, runs itself): never
    a second run.
    """
    claimed = False
    try:
        with transaction.atomic():
            record = _claim_insert(
                user=user, key=key, method=method, path=path, fingerprint=fingerprint
            )
            claimed = True
            status, body = operation(IdempotencyContext(record))
            if status < 500:
                _complete(record, status=status, body=body)
            else:
                # Not an outcome: the writes commit, the key does not.
                IdempotencyKey.objects.filter(pk=record.pk).delete()
        return IdempotentResult(status, body, False)
    except IntegrityError:
        if claimed:
            raise
        return None
    except _TRANSIENT_ERRORS:
        raise
    except DomainError as error:
        if error.status < 500:
            # Everything rolled back: the outcome is stored on its own.
            _outcome_store(
                user=user,
                key=key,
                method=method,
                path=path,
                fingerprint=fingerprint,
                status=error.status,
                body=error.to_problem(),
            )
        raise


def _outcome_store(
    *, user: User, key: str, method: str, path: str, fingerprint: str, status: int, body: Any
) -> None:
    """Store a completed key with its response. A concurrent request with this key that
    stored its own first wins: the key replays that."""
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user=user,
                key=key,
                request_method=method,
                request_path=path,
                request_fingerprint=fingerprint,
                status=IdempotencyKey.Status.COMPLETED,
                response_status=status,
                response_body=_storable(body),
                completed_at=timezone.now(),
            )
    except IntegrityError:
        pass


def _storable(body: Any) -> Any:
    # Whatever the body quotes, PostgreSQL must be able to store it (no NUL, no lone
    # surrogates), or the key could never complete.
    return json_storable(json.loads(json.dumps(body, cls=DjangoJSONEncoder)))


def _held(record: IdempotencyKey) -> Any:
    """The record's row while still claimed as this request claimed it (a key a
    statement claimed has no pk here: its user and key name it)."""
    named = (
        {"pk": record.pk}
        if record.pk is not None
        else {"user_id": record.user_id, "key": record.key}
    )
    return IdempotencyKey.objects.filter(
        **named, status=IdempotencyKey.Status.IN_PROGRESS, locked_at=record.locked_at
    )


def _complete(record: IdempotencyKey, *, status: int, body: Any) -> None:
    completed = _held(record).update(
        status=IdempotencyKey.Status.COMPLETED,
        response_status=status,
        response_body=_storable(body),
        completed_at=timezone.now(),
        locked_at=None,
    )
    if not completed:
        # Another request took the claim over: let this one roll back.
        raise ConcurrentUpdate()


def _release(record: IdempotencyKey) -> None:
    """Give the key up so a retry can run: resumable keys stay, unlocked."""
    held = _held(record)
    if record.resource_id:
        held.update(locked_at=None)
    else:
        held.delete()


def idempotent_execute(
    *,
    user: User,
    key: str | None,
    method: str,
    path: str,
    payload: Any,
    operation: Callable[[IdempotencyContext], tuple[int, Any]],
    atomic: bool = True,
    written: Callable[[CompletedKey], Any | None] | None = None,
    written_status: int = 201,
    claimed_by_statement: Callable[[StatementClaim], tuple[int, Any] | None] | None = None,
) -> IdempotentResult:
    """Run `operation` at most once for this user's key; replay its stored response after.

    `operation` returns (HTTP status, JSON body). A DomainError it raises is stored as a
    problem response (the outcome of this key), except transient ones and 5xx; any other
    exception releases the key so the client can retry. A 5xx result is not stored
    either. With atomic=False the operation manages its own transactions (see above).

    `written` (atomic only) is a faster form of the operation for the cases it covers:
    it writes the key, completed with its body and `written_status`, in the same single
    statement as its own rows (so the key is claimed in the operation's transaction, as
    above), and returns the body. It returns None, writing nothing, for a case it leaves
    to `operation` (including every error outcome), and raises KeyTaken when the key
    exists; either way `operation` then runs as above (or the key replays).

    `claimed_by_statement` (atomic=False only) is the same for a multi-step operation:
    its first statement claims the key (`StatementClaim.row`: in progress, checkpointed)
    with its own rows, and it reports that with `StatementClaim.claimed` once that
    statement committed; it then runs the rest and returns (HTTP status, JSON body), and
    the key completes or is released as a claimed key is after `operation`. It returns
    None before claiming (a case it leaves to `operation`), or raises KeyTaken when the
    key exists; either way `operation` then runs as above.
    """
    key = idempotency_key_validate(key)
    fingerprint = request_fingerprint(method=method, path=path, payload=payload)
    completed_key = CompletedKey(
        user_id=user.pk,
        key=key,
        method=method,
        path=path,
        fingerprint=fingerprint,
        status=written_status,
    )
    if atomic and written is not None:
        try:
            body = written(completed_key)
        except KeyTaken:
            body = None
        if body is not None:
            return IdempotentResult(written_status, body, False)
    if not atomic and claimed_by_statement is not None:
        claim = StatementClaim(completed_key)
        try:
            claimed = claimed_by_statement(claim)
        except KeyTaken:
            claimed = None
        except BaseException as error:
            if claim.record is not None:
                _failed_release(claim.record, error)
            raise
        if claim.record is not None:
            if claimed is None:
                raise RuntimeError("A statement claimed the key and then gave no outcome.")
            if claim.completed_in_operation:
                return IdempotentResult(*claimed, False)
            return _claimed_finish(claim.record, *claimed)
    if atomic:
        result = _execute_in_one_transaction(
            user=user,
            key=key,
            method=method,
            path=path,
            fingerprint=fingerprint,
            operation=operation,
        )
        if result is not None:
            return result
        record, owned = _claim_existing(user=user, key=key, fingerprint=fingerprint)
    else:
        record, owned = _claim(
            user=user, key=key, method=method, path=path, fingerprint=fingerprint
        )
    if not owned:
        return IdempotentResult(record.response_status or 200, record.response_body, True)
    context = IdempotencyContext(record)
    try:
        if atomic:
            with transaction.atomic():
                status, body = operation(context)
                if status < 500:
                    _complete(record, status=status, body=body)
        else:
            status, body = operation(context)
            if status < 500:
                _complete(record, status=status, body=body)
        if status >= 500:
            _release(record)
    except BaseException as error:
        _failed_release(record, error)
        raise
    return IdempotentResult(status, body, False)


def _claimed_finish(record: IdempotencyKey, status: int, body: Any) -> IdempotentResult:
    """Complete the claimed key with the operation's outcome, or (5xx) release it."""
    if status < 500:
        _complete(record, status=status, body=body)
    else:
        _release(record)
    return IdempotentResult(status, body, False)


def _failed_release(record: IdempotencyKey, error: BaseException) -> None:
    """The claimed key's operation raised `error` (the caller re-raises it): a
    DomainError below 500 is its stored outcome; anything else releases the key."""
    if (
        isinstance(error, DomainError)
        and not isinstance(error, _TRANSIENT_ERRORS)
        and error.status < 500
    ):
        _complete(record, status=error.status, body=error.to_problem())
        return
    _release(record)


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete keys older than IDEMPOTENCY_KEY_TTL, in batches (core.pruning). Return how
    many were deleted."""
    return idempotency_keys_prune(now=now)
