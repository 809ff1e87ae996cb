"""/v1/shops/{shop_id}/members: enrolment, look-up by contact, a member and their points."""

from datetime import timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api import access
from loyalty.api.common import MemberId, ShopId, json_response, new_router
from loyalty.domain.errors import InvalidInput, TooLarge
from loyalty.domain.ledger import iso
from loyalty.domain.members import Member, Profile, ProfileChange, e164, normalise_email, referral_code

router = new_router()


def member_view(shop_id: str, member: Member, *, new: bool = False) -> dict[str, Any]:
    """The member as the API shows them: profile, tier (the base tier until they reach another) and points."""
    services = runtime.services()
    base = services.shops.program(shop_id).tiers[:1]
    member_id = member.profile.member_id
    expiring = [] if new else services.points.expiring(shop_id, member_id)  # a new member has no lots
    balance = member.balance
    review_at = member.tier.review_at
    # An erased member (by pseudonym) refers no one: their code was deleted with their contacts.
    code = {} if member.erased_at else {"referral_code": referral_code(shop_id, member_id)}
    extra: dict[str, Any] = {"erased_at": iso(member.erased_at)} if member.erased_at else {}
    consent = member.consent
    if consent is not None:  # the proof of the member's choice: when, and by whom
        extra["consent"] = {"given": consent.given, "at": iso(consent.at), "by": consent.by}
    return {
        **member.profile.model_dump(mode="json", exclude_none=True),
        **extra,
        "enrolled_at": iso(member.enrolled_at),
        "tier": member.tier.tier or (base[0].name if base else None),
        "tier_review_at": iso(review_at) if review_at else None,
        **code,
        "points": {
            "available": balance.available,
            "pending": balance.pending,
            "expiring": [{"points": points, "expires_at": iso(when)} for points, when in expiring],
        },
    }


@router.post(
    "/v1/shops/<shop_id>/members", summary="Enrol a member (201; 200 on an identical replay)", tags=["members"]
)
def enrol(shop_id: ShopId, body: Annotated[Profile, Body()]) -> Response[str]:
    created, member = runtime.services().members.enrol(shop_id, body)
    return json_response(201 if created else 200, member_view(shop_id, member, new=created))


@router.get("/v1/shops/<shop_id>/members", summary="Find members by e-mail or phone", tags=["members"])
def find(
    shop_id: ShopId,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> Response[str]:
    if (email is None) == (phone is None):
        raise InvalidInput("give exactly one of email or phone", field="email")
    try:
        region = runtime.services().shops.program(shop_id).phone_region
        kind, value = ("email", normalise_email(email)) if email is not None else ("phone", e164(phone or "", region))
    except ValueError as exc:
        raise InvalidInput(str(exc), field="email" if email is not None else "phone") from exc
    found = runtime.services().members.find(shop_id, kind, value)
    return json_response(200, {"items": [member_view(shop_id, member) for member in found]})


@router.get("/v1/shops/<shop_id>/members/<member_id>", summary="A member and their points", tags=["members"])
def get_member(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    return json_response(200, member_view(shop_id, runtime.services().members.member(shop_id, member_id)))


@router.patch(
    "/v1/shops/<shop_id>/members/<member_id>",
    summary="Change a member's contacts, birthday or marketing consent (only the fields given; null removes one)",
    tags=["members"],
)
def change_member(shop_id: ShopId, member_id: MemberId, body: Annotated[ProfileChange, Body()]) -> Response[str]:
    member = runtime.services().members.change_profile(shop_id, member_id, body, by=access.caller())
    return json_response(200, member_view(shop_id, member))


@router.delete(
    "/v1/shops/<shop_id>/members/<member_id>",
    summary="Erase a member (right to erasure; irreversible): answers the pseudonym their ledger now carries",
    tags=["members"],
)
def erase_member(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    context = router.lambda_context  # moves stop this long before the function's timeout, to answer in time
    erased = runtime.services().privacy.erase(
        shop_id, member_id, lambda: context.get_remaining_time_in_millis() < ERASE_MARGIN_MS
    )
    return json_response(200, erased)


# An erasure stops moving a member's items this long before the API function's timeout (template.yaml's 10 s) and
# answers `complete: false`; its replay, or the nightly outbox run, moves the rest.
ERASE_MARGIN_MS = 3_000
# Lambda answers API Gateway with at most 6 MB; keep room for the headers and the proxy's own fields.
EXPORT_MAX_BYTES = 5_500_000


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: Annotated[int, Field(ge=60, le=86_400, strict=True)] = 900


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/tokens",
    summary="A short-lived token for the member's own /v1/me routes (after the shop's own login)",
    tags=["members"],
)
def issue_token(shop_id: ShopId, member_id: MemberId, body: Annotated[TokenRequest, Body()]) -> Response[str]:
    services = runtime.services()
    services.members.member(shop_id, member_id)  # a member of this shop (404 otherwise)
    return json_response(201, services.tokens.issue(shop_id, member_id, timedelta(seconds=body.ttl_seconds)))


class MemberBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Rows are checked one by one (a bad row is answered with its reason, the others go on): see ImportRow.
    members: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=100)]


@router.post(
    "/v1/shops/<shop_id>/members:batch",
    summary="Import up to 100 members, each with its opening points and tier (idempotent per row)",
    tags=["members"],
)
def import_members(shop_id: ShopId, body: Annotated[MemberBatch, Body()]) -> Response[str]:
    return json_response(200, {"results": runtime.services().imports.import_rows(shop_id, body.members)})


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/export",
    summary="Everything we hold on the member, as JSON (right of access)",
    tags=["members"],
)
def export(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    answer = json_response(200, runtime.services().privacy.export(shop_id, member_id))
    if len(answer.body or "") > EXPORT_MAX_BYTES:  # Lambda would fail the whole response: a 413, not a 502
        raise TooLarge("this member's data is too large for one response", field="member_id")
    return answer
