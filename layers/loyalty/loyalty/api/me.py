"""/v1/me: a member's own account, for a mini-program holding a member token (`Authorization: Bearer <token>`).

Each route is the shop route of the same name with the shop and the member taken from the token, never from the
request, so a token reaches its own member only, and never a shop route (those take staff keys). The shop's
backend gets a token from POST /v1/shops/{shop}/members/{id}/tokens (members.py).
"""

from datetime import date
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict

from loyalty import runtime
from loyalty.api import access, cards, coupons, engagement, lottery, mall, members, points, wallet
from loyalty.api.common import IdempotencyKey, json_response, new_router
from loyalty.api.lottery import LotteryId
from loyalty.domain.members import ProfileChange

router = new_router()
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048)]


def me() -> tuple[str, str]:
    caller = access.caller()
    assert caller.kind == "member" and caller.shop_id and caller.member_id  # the resolver lets no other in
    return caller.shop_id, caller.member_id


@router.get("/v1/me", summary="My membership: profile, tier and points (member token)", tags=["me"])
def my_account() -> Response[str]:
    return members.get_member(*me())


class MyChange(BaseModel):
    """What a member changes themselves: their marketing consent, and their birthday if they have not given one."""

    model_config = ConfigDict(extra="forbid")
    marketing_consent: bool | None = None
    birthday: date | None = None


@router.patch("/v1/me", summary="Give or withdraw my marketing consent; give my birthday", tags=["me"])
def change_my_account(body: Annotated[MyChange, Body()]) -> Response[str]:
    shop_id, member_id = me()
    change = ProfileChange.model_validate(body.model_dump(exclude_unset=True))
    member = runtime.services().members.change_profile(shop_id, member_id, change, by=access.caller())
    return json_response(200, members.member_view(shop_id, member))


@router.delete("/v1/me", summary="Erase my membership and my data (irreversible)", tags=["me"])
def erase_me() -> Response[str]:
    return members.erase_member(*me())


@router.get("/v1/me/export", summary="Everything the shop's loyalty program holds on me, as JSON", tags=["me"])
def my_data() -> Response[str]:
    return members.export(*me())


@router.get("/v1/me/ledger", summary="Why my points are what they are, newest first", tags=["me"])
def my_ledger(limit: Limit = 25, next: Cursor = None) -> Response[str]:
    return points.ledger(*me(), limit=limit, next=next)


@router.get("/v1/me/coupons", summary="My coupons, by status", tags=["me"])
def my_coupons(status: Annotated[Literal["available", "used", "expired"] | None, Query()] = None) -> Response[str]:
    return coupons.member_coupons(*me(), status=status)


@router.post("/v1/me/coupons", summary="Claim a coupon (idempotent on Idempotency-Key)", tags=["me"])
def claim_coupon(body: Annotated[coupons.Claim, Body()], idempotency_key: IdempotencyKey) -> Response[str]:
    return coupons.claim(*me(), body=body, idempotency_key=idempotency_key)


@router.post("/v1/me/check-ins", summary="Check in today", tags=["me"])
def check_in() -> Response[str]:
    return engagement.check_in(*me())


@router.get("/v1/me/check-ins", summary="My check-ins of a month", tags=["me"])
def my_check_ins(month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None) -> Response[str]:
    return engagement.check_ins(*me(), month=month)


@router.get("/v1/me/mall/items", summary="The points mall, with what I may still exchange", tags=["me"])
def mall_items(limit: Limit = 25, next: Cursor = None) -> Response[str]:
    shop_id, member_id = me()
    return mall.list_items(shop_id, member_id=member_id, limit=limit, next=next)


@router.post("/v1/me/exchanges", summary="Exchange points for a mall item", tags=["me"])
def exchange(body: Annotated[mall.ExchangeRequest, Body()], idempotency_key: IdempotencyKey) -> Response[str]:
    return mall.exchange(*me(), body=body, idempotency_key=idempotency_key)


@router.get("/v1/me/exchanges", summary="My exchanges, newest first", tags=["me"])
def my_exchanges(limit: Limit = 25, next: Cursor = None) -> Response[str]:
    return mall.member_exchanges(*me(), limit=limit, next=next)


@router.get("/v1/me/lotteries/<lottery_id>", summary="A lottery and each prize's chance now", tags=["me"])
def a_lottery(lottery_id: LotteryId) -> Response[str]:
    return lottery.get_lottery(me()[0], lottery_id)


@router.post("/v1/me/draws", summary="Draw in a lottery", tags=["me"])
def draw(body: Annotated[lottery.DrawRequest, Body()], idempotency_key: IdempotencyKey) -> Response[str]:
    return lottery.draw(*me(), body=body, idempotency_key=idempotency_key)


@router.get("/v1/me/draws", summary="My draws, newest first", tags=["me"])
def my_draws(limit: Limit = 25, next: Cursor = None) -> Response[str]:
    return lottery.member_draws(*me(), limit=limit, next=next)


@router.get("/v1/me/wallet", summary="My stored value: principal and bonus", tags=["me"])
def my_wallet() -> Response[str]:
    return wallet.wallet(*me())


@router.get("/v1/me/wallet/ledger", summary="Every change to my wallet, newest first", tags=["me"])
def my_wallet_ledger(limit: Limit = 25, next: Cursor = None) -> Response[str]:
    return wallet.wallet_ledger(*me(), limit=limit, next=next)


@router.get("/v1/me/savings", summary="What my membership has saved me", tags=["me"])
def my_savings() -> Response[str]:
    return wallet.savings(*me())


@router.post("/v1/me/cards/redemptions", summary="Redeem a gift card into my wallet", tags=["me"])
def redeem_card(body: Annotated[cards.Redemption, Body()], idempotency_key: IdempotencyKey) -> Response[str]:
    return cards.redeem(*me(), body=body, idempotency_key=idempotency_key)
