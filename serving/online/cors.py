"""Optional cross-origin access for an agent desktop served from another origin
(`NEXTBEST_CORS_ORIGINS`; off by default, see docs/api.md).

The CORS middleware goes in front of every other guard: a browser's preflight (an OPTIONS request
without the API key) is answered before the key is checked, and the guards' 4xx answers carry the
CORS headers so the page can read their message.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware

from serving.online.deadline import HEADER as DEADLINE_HEADER
from serving.online.settings import ServingSettings

PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer


def cors_options(settings: ServingSettings) -> dict[str, Any]:
    """Starlette CORSMiddleware options: the configured origins, the API's methods and headers."""
    return {
        "allow_origins": list(settings.allowed_origins),
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["content-type", settings.api_key_header.lower(), DEADLINE_HEADER.lower()],
        "max_age": PREFLIGHT_MAX_AGE,
    }


def allow_cross_origin(service: Any, settings: ServingSettings) -> None:
    """Put CORS outermost among the service's ASGI middlewares, if any origin is configured."""
    if settings.allowed_origins:
        service.middlewares.insert(0, (CORSMiddleware, cors_options(settings)))
