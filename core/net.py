"""What a failed HTTP call tells about whether the other side could have acted.

No Django here: the provider and warehouse adapters use it.
"""

import requests
import urllib3


def request_never_sent(exc: BaseException) -> bool:
    """Tell whether a transport error happened before any byte reached the server.

    Only connect failures count (refused, unresolvable, connect timeout); a reset or a
    timeout later may come after the server acted. Follows explicit causes and wrapped
    arguments, not implicit ``__context__``, which can hold unrelated errors.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        # urllib3's NewConnectionError (refused, DNS) subclasses ConnectTimeoutError.
        if isinstance(
            error, requests.exceptions.ConnectTimeout | urllib3.exceptions.ConnectTimeoutError
        ):
            return True
        if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
            pending.append(error.reason)
        pending.extend(arg for arg in error.args if isinstance(arg, BaseException))
        if error.__cause__ is not None:
            pending.append(error.__cause__)
    return False
