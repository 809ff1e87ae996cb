"""Segments and win-back: members by segment, the nightly review of segments that change with time alone, and
win-back campaigns that give a coupon to each member as they enter a segment.

The aggregator (service/reports.py) keeps each member's RFM and segment as their changes stream in. A member who
stops acting changes segment with no change to stream: their RFM item is on the due index for that day, and
`review` (run nightly) moves them, gives each campaign of the new segment's coupon once (a `WINBACK#` item per
member and campaign, in the same transaction), and publishes `member.dormant` / `member.at_risk` to consenting
members' shops' messaging.
"""

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain import reports as report_rules
from loyalty.domain import segments as rules
from loyalty.domain.engagement import local_day
from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.orders import Identifier
from loyalty.service.coupons import Coupons, CouponToGive
from loyalty.service.shops import Shops
from loyalty.store import members as member_store
from loyalty.store import reports as report_store
from loyalty.store import segments as store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import member_of

ATTEMPTS = 5
# Each campaign adds four figures to the shop's report items (store/reports.py), which must stay far below
# DynamoDB's 400 KB an item.
MAX_CAMPAIGNS = 100


class CampaignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: str = Field(description="at_risk or dormant: the segment whose entrants the campaign reaches")
    template_id: Identifier = Field(description="the coupon template each member reached is given")
    message: str | None = Field(default=None, max_length=500, description="passed on in member.dormant events")


class Segments:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        coupons: Coupons,
        events: Events,
        *,
        clock: Callable[[], datetime],
        shards: int,
    ) -> None:
        self.db = db
        self.shops = shops
        self.coupons = coupons
        self.events = events
        self.clock = clock
        self.shards = shards

    # ---------------------------------------------------------------- listing

    def members(self, shop_id: str, segment: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        if segment not in rules.SEGMENTS:
            raise NotFound(f"no segment {segment}; segments are {', '.join(rules.SEGMENTS)}", field="segment")
        program = self.shops.program(shop_id)
        items, after = store.segment_page(self.db, shop_id, segment, limit=limit, cursor=cursor)
        today = local_day(self.clock(), program.timezone)
        out = []
        for item in items:
            rfm = store.rfm_of(item)
            out.append(
                {
                    "member_id": item["SegSK"],
                    "segment_since": item.get("segment_since"),
                    "last_active": item.get("last_active"),
                    "orders": rfm.orders,
                    "spend": rfm.spend,
                    "scores": rules.scores(rfm, today, program.segments, program.currency),
                }
            )
        return {"segment": segment, "items": out, "next": after}

    # ---------------------------------------------------------------- campaigns

    def create_campaign(self, shop_id: str, request: CampaignRequest) -> dict[str, Any]:
        if request.segment not in rules.ENTERED_BY_TIME:
            raise InvalidInput(
                f"a win-back campaign reaches members entering {' or '.join(rules.ENTERED_BY_TIME)}", field="segment"
            )
        self.coupons.template(shop_id, request.template_id)  # 404 naming template_id
        if len(store.campaigns(self.db, shop_id)) >= MAX_CAMPAIGNS:
            raise Conflict(
                f"a shop has at most {MAX_CAMPAIGNS} win-back campaigns", field="segment", code="too_many_campaigns"
            )
        campaign = {
            "campaign_id": "cmp_" + secrets.token_hex(8),
            **request.model_dump(exclude_none=True),
            "created_at": self.clock().isoformat(),
        }
        store.put_campaign(self.db, shop_id, campaign)
        return self.campaign_report(shop_id, campaign["campaign_id"])

    def campaign_report(self, shop_id: str, campaign_id: str) -> dict[str, Any]:
        item = store.get_campaign(self.db, shop_id, campaign_id)
        if item is None:
            raise NotFound(f"campaign {campaign_id} not found", field="campaign_id")
        return _report(item, report_store.totals(self.db, shop_id))

    def campaign_reports(self, shop_id: str) -> list[dict[str, Any]]:
        """Every win-back campaign of the shop with its results (two reads, however many campaigns)."""
        totals = report_store.totals(self.db, shop_id)
        return [_report(item, totals) for item in store.campaigns(self.db, shop_id)]

    # ---------------------------------------------------------------- the nightly review

    def review(self, due: Item, time: datetime) -> bool:
        """Move a member whose segment changes today with time alone; reach them with the new segment's
        campaigns. False if there was nothing to do (moved already, or the member acted since)."""
        shop_id, member_id = member_of(str(due["PK"]))
        program = self.shops.program(shop_id)
        today = local_day(time, program.timezone)
        for _ in range(ATTEMPTS):
            before = store.get_rfm(self.db, shop_id, member_id)
            if before is None or before.get("DueSK") != due.get("DueSK"):
                return False  # re-filed or moved since the index was read
            rfm = store.rfm_of(before)
            segment = rules.segment_of(rfm, today, program.segments, program.currency)
            winback = dict(before.get("winback") or {})
            # entering now, or entered when the aggregator last moved them (`reach`, still to be reached)
            entering = segment in rules.ENTERED_BY_TIME and (
                segment != before.get("segment") or before.get("reach") == segment
            )
            tx = self.db.transaction()
            reached: list[dict[str, Any]] = []
            if entering:
                for campaign in store.campaigns(self.db, shop_id):
                    if campaign["segment"] != segment or campaign["campaign_id"] in winback:
                        continue
                    code = self._give(tx, shop_id, member_id, campaign, time)
                    store.add_reached(tx, shop_id, member_id, campaign["campaign_id"], code=code, at=time)
                    winback[campaign["campaign_id"]] = today.isoformat()
                    reached.append({"campaign_id": campaign["campaign_id"], "code": code} | _message(campaign))
            item = store.rfm_item(
                shop_id,
                member_id,
                rfm,
                before=before,
                segment=segment,
                today=today,
                rules=program.segments,
                timezone=program.timezone,
                winback=winback,
                now=time,
                shards=self.shards,
            )
            store.put_rfm(tx, item, before=before)
            if entering:
                self._announce(shop_id, member_id, segment, rfm, since=str(item["segment_since"]), reached=reached)
            try:
                self.db.commit(tx)
                return True
            except TransactionCancelled:
                continue  # the member acted meanwhile, or a coupon's stock moved: read again
        raise Retryable(f"segment review of {member_id}: too much contention")

    def _give(self, tx: Any, shop_id: str, member_id: str, campaign: Item, time: datetime) -> str | None:
        """Claim the campaign's coupon for the member in the review's transaction (None: the template has none
        to give now; the member is still counted reached)."""
        given = self.coupons.coupon_for(shop_id, str(campaign["template_id"]), member_id, time)
        if given is None:
            return None
        tagged = given.coupon.model_copy(update={"campaign_id": campaign["campaign_id"]})
        self.coupons.add_claim(tx, shop_id, CouponToGive(tagged, given.template, given.shard), time)
        return tagged.code

    def _announce(
        self, shop_id: str, member_id: str, segment: str, rfm: rules.Rfm, *, since: str, reached: list[Any]
    ) -> None:
        """member.dormant / member.at_risk for the shop's messaging, before the move is written (a review that
        must try again announces again, under the same event_id), to members who consented to marketing."""
        if not member_store.consents_to_marketing(self.db, shop_id, member_id):
            return
        self.events.publish(
            f"member.{segment}",
            {
                "event_id": f"{member_id}:{segment}:{since}",
                "shop_id": shop_id,
                "member_id": member_id,
                "segment": segment,
                "last_active": rfm.last_active.isoformat() if rfm.last_active else None,
                "orders": rfm.orders,
                "campaigns": reached,
            },
        )


def _message(campaign: Item) -> dict[str, Any]:
    return {"message": campaign["message"]} if campaign.get("message") else {}


def _report(item: Item, totals: dict[str, int]) -> dict[str, Any]:
    """A campaign and its results, from the shop's figures."""
    campaign_id = str(item["campaign_id"])
    prefix = f"{report_rules.WINBACK_PREFIX}{campaign_id}:"
    figures = {name.removeprefix(prefix): value for name, value in totals.items() if name.startswith(prefix)}
    reached = figures.get("reached", 0)
    ordered = figures.get("orders", 0)
    return {
        **{k: item[k] for k in ("campaign_id", "segment", "template_id", "message", "created_at") if k in item},
        "reached": reached,
        "coupons_used": figures.get("used", 0),
        "orders_within_30_days": ordered,
        "gmv_within_30_days": figures.get("gmv", 0),
        # orders that followed per member reached: the win-back rate
        "win_back_rate": f"{ordered / reached:.4f}" if reached else None,
    }
