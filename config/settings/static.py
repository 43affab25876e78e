"""Static files (the admin's, the API docs') served by the app itself with whitenoise:
one process to run, no web server to configure for them. Used by local and production;
tests leave the middleware out."""


def middleware_with_whitenoise(middleware: list[str]) -> list[str]:
    """The middleware with whitenoise's right after SecurityMiddleware, as it asks."""
    security = middleware.index("django.middleware.security.SecurityMiddleware")
    return [
        *middleware[: security + 1],
        "whitenoise.middleware.WhiteNoiseMiddleware",
        *middleware[security + 1 :],
    ]
