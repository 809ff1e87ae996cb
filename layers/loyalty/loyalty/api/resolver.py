"""The member and merchant API: one resolver, a Router per resource, authentication in one place.

Where a route goes: a new resource gets its own module here with a `router`, included below; its route functions
parse, call one capability from `runtime.services()`, and shape the answer. Credentials are never checked in a
route: `authenticate` (a middleware) does it for every path under /v1/shops.
"""

import json
import re
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from loyalty import runtime
from loyalty.api import (
    access,
    audit,
    cards,
    coupons,
    dashboard,
    engagement,
    errors,
    integrations,
    keys,
    lottery,
    mall,
    me,
    members,
    points,
    reports,
    shops,
    wallet,
)
from loyalty.api.auth import bearer, has_bearer, require_operator
from loyalty.domain.access import Caller, Denied
from loyalty.store import audit as audit_store
from loyalty.store.audit import AuditScope

SHOP_PATH = re.compile(r"^/v1/shops/(?P<shop_id>[^/]+)(/|$)")
ME_PATH = re.compile(r"^/v1/me(/|$)")
ROUTE_PARAMETER = re.compile(r"{(\w+)}")


def audit_scope(app: APIGatewayRestResolver, caller: Caller) -> AuditScope:
    """Who is writing and what they asked for, as the audit trail records it: a member only by pseudonym."""
    services = runtime.services()
    actor: dict[str, Any] = {"kind": caller.kind}
    if caller.kind == "key":
        actor |= {"key_id": caller.key_id, "name": caller.name, "role": caller.role}
    # The path's own ids only (Powertools' route arguments also hold the parsed body, which may be personal).
    named = set(ROUTE_PARAMETER.findall(app.request.route)) - {"shop_id"}
    target = {name: str(value) for name, value in app.request.path_parameters.items() if name in named}
    member_id = caller.member_id or target.pop("member_id", None)
    member_ref = services.shops.pseudonym(caller.shop_id, member_id) if member_id and caller.shop_id else None
    if caller.kind == "member":
        actor["member_ref"] = member_ref
    return AuditScope(
        actor=actor,
        method=app.request.method,
        route=app.request.route,
        target=target,
        request_id=app.current_event.request_context.request_id or uuid.uuid4().hex,
        at=services.clock(),
        member_ref=member_ref,
    )


def build() -> APIGatewayRestResolver:
    # JSON numbers are read as Decimal, never float: rates and multipliers stay exact.
    app = APIGatewayRestResolver(
        enable_validation=True, json_body_deserializer=partial(json.loads, parse_float=Decimal)
    )

    def check_caller() -> None:
        """The credentials the requested route needs: the operator's for /v1/shops, a key of the shop in the path
        whose role may call the route (api/access.py) for the shop's routes, a member token for /v1/me. Raises
        Denied (a PermissionError)."""
        access.set_caller(None)
        path = app.current_event.path
        shop = SHOP_PATH.match(path)
        link = (app.current_event.query_string_parameters or {}).get("token")
        if shop and link and path.rstrip("/") == f"/v1/shops/{shop['shop_id']}/dashboard" and not has_bearer(app):
            # a browser opening a dashboard login link: the link's token opens that page of that shop, read-only
            caller = runtime.services().dashboard_links.verify(link)
            if caller.shop_id != shop["shop_id"]:
                raise Denied("unauthenticated")
            access.set_caller(caller)
        elif shop:
            caller = runtime.services().access.authenticate(bearer(app), shop["shop_id"])
            access.require(caller, app.request.method, app.request.route)
            access.set_caller(caller)
        elif path.rstrip("/") == "/v1/shops":
            require_operator(app)
            access.set_caller(Caller(kind="operator"))
        elif ME_PATH.match(path):
            access.set_caller(runtime.services().tokens.verify(bearer(app)))

    def authenticate(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[str]:
        check_caller()
        if app.request.method in ("GET", "HEAD", "OPTIONS"):
            return next_middleware(resolver)
        # Every write the route makes carries an entry of who made it (store/audit.py), in its own transaction.
        with audit_store.recording(audit_scope(app, access.caller())):
            return next_middleware(resolver)

    # Validation runs before middlewares; its error handler checks the caller too, so strangers get a 401/403 and
    # never learn the schema.
    errors.install(app, check_caller)
    app.use(middlewares=[authenticate])
    for resource in (
        shops,
        keys,
        audit,
        me,
        members,
        points,
        wallet,
        cards,
        engagement,
        coupons,
        mall,
        lottery,
        integrations,
        reports,
        dashboard,
    ):
        app.include_router(resource.router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json(app))

    @app.get("/swagger", include_in_schema=False)
    def swagger() -> Response[str]:
        return Response(status_code=200, content_type="text/html", body=swagger_html(app))

    return app


# The OpenAPI models are imported when a schema is asked for, not at start-up: Powertools' enable_swagger imports
# them at once (about 110 ms of every cold start of the API, for pages that are rarely read).
def openapi_json(app: APIGatewayRestResolver) -> str:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return app.get_openapi_json_schema(
        title="loyalty",
        version="0.1.0",
        description="Members, points and their ledger for online shops. Errors: "
        '{"error": {"code", "message", "field"}} with a 4xx status.',
        security_schemes={"bearer": HTTPBearer()},
        security=[{"bearer": []}],
    )


def swagger_html(app: APIGatewayRestResolver) -> str:
    """Swagger UI over this API's schema, with its script and styles inline (as enable_swagger serves it)."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    assets = Path(swagger_ui.__file__).parent
    return swagger_ui.generate_swagger_html(
        spec=openapi_json(app).replace("</", "<\\/"),
        swagger_js=(assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        swagger_css=(assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        swagger_base_url="",
        oauth2_config=None,
    )
