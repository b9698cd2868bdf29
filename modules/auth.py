"""One authentication layer over every route (api.md §3).

API routes (/sdapi, /internal, extension routes) take HTTP Basic credentials: those of --api-auth,
or those of --gradio-auth when only that is given. The UI uses Gradio's login form with the
--gradio-auth credentials; its session cookie is checked by Gradio itself.
"""
import base64
import binascii
import hmac
import os

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse


def parse_credentials(text: str | None) -> dict[str, str]:
    """'user:pass,user2:pa:ss' -> {user: pass, user2: 'pa:ss'} (split at the first colon)."""
    creds = {}
    for entry in (text or "").replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep:
            raise ValueError(f"Credentials entry '{user}' has no ':password' part")
        creds[user] = password
    return creds


def ui_credentials(cmd_opts) -> dict[str, str]:
    creds = parse_credentials(cmd_opts.gradio_auth)
    if cmd_opts.gradio_auth_path:
        with open(cmd_opts.gradio_auth_path, encoding="utf8") as file:
            creds.update(parse_credentials(file.read()))
    return creds


def api_credentials(cmd_opts) -> dict[str, str]:
    return parse_credentials(cmd_opts.api_auth) if cmd_opts.api_auth else ui_credentials(cmd_opts)


def check(creds: dict[str, str], user: str, password: str) -> bool:
    expected = creds.get(user)
    # compare something even for unknown users so timing does not reveal which names exist
    return hmac.compare_digest((expected or os.urandom(8).hex()).encode(), password.encode()) and expected is not None


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:]).decode("utf8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def is_api_path(path: str) -> bool:
    return path.startswith(("/sdapi/", "/internal/", "/controlnet/", "/docs", "/redoc", "/openapi.json"))


class ApiAuthMiddleware(BaseHTTPMiddleware):
    """Requires HTTP Basic credentials on API paths when any credentials are configured."""

    def __init__(self, app, creds: dict[str, str], protect):
        super().__init__(app)
        self.creds = creds
        self.protect = protect  # path -> bool

    async def dispatch(self, request, call_next):
        if self.creds and self.protect(request.url.path):
            given = _basic(request.headers.get("authorization"))
            if given is None or not check(self.creds, *given):
                return JSONResponse({"detail": "Incorrect username or password"}, status_code=401,
                                    headers={"WWW-Authenticate": "Basic"})
        return await call_next(request)


def gradio_session_ok(request) -> bool:
    """For UI-only routes outside Gradio (card previews): true when the Gradio app mounted on this
    server has no login, or the request carries the session cookie of a logged-in user."""
    from starlette.routing import Mount
    for route in request.app.routes:
        ui = getattr(route, "app", None) if isinstance(route, Mount) else None
        if ui is None or not hasattr(ui, "tokens") or not hasattr(ui, "cookie_id"):
            continue
        if getattr(ui, "auth", None) is None and getattr(ui, "auth_dependency", None) is None:
            return True
        token = request.cookies.get(f"access-token-{ui.cookie_id}") or \
            request.cookies.get(f"access-token-unsecure-{ui.cookie_id}")
        return token is not None and ui.tokens.get(token) is not None
    return True  # no UI mounted: the route is not reachable from a page
