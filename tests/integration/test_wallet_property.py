"""Stored value under at-least-once delivery: any history of top-ups, wallet payments, their refunds and
cancellations, and gift card redemptions, delivered shuffled and duplicated, ends with the balances the documented
rules give for the order the events were applied in, and `principal = Σ entries` and `bonus = Σ entries` hold after
every delivery.

The rules depend on the order events are applied in (a payment draws principal or bonus by what the wallet holds
then; a top-up's refund takes back only what is left), so the expected figures come from a small model of those
rules (`Model`, written apart from domain/wallet.py) fed the events in the order the service applied them; a
redelivered fact must answer `duplicate` and change nothing."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.resources import Stack
from loyalty.domain.cards import BatchRequest
from loyalty.domain.errors import Retryable
from loyalty.domain.program import Program
from loyalty.runtime import Services
from tests.helpers import cancelled, check_invariants, check_wallet, event_model, fresh_shop, paid, refunded

RECENT = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
PLANS = [(10_000, 1_000), (30_000, 5_000)]  # pay 100 get 10, pay 300 get 50 (minor units)
CARDS = {"principal": 5_000, "bonus": 2_000}  # a batch of each: value per card
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def yuan(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


# ---------------------------------------------------------------------------- histories, in business order


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Top-ups (some refunded), card redemptions and purchases paying partly from the wallet (some refunded or
    cancelled). Each purchase's wallet_used is affordable when it happens in business order."""
    steps: list[dict[str, Any]] = []
    # What the wallet can be relied on to hold: principal paid in less what top-up refunds take back, less what
    # purchases drew (bonuses and what purchase refunds give back only add to it). So every purchase can draw its
    # wallet_used in any delivery order, once enough of the history has arrived.
    balance = 0
    cards = {"principal": 0, "bonus": 0}
    for n in range(draw(st.integers(min_value=2, max_value=6))):
        kind = draw(st.sampled_from(["top_up", "top_up", "card", "purchase", "purchase"])) if n else "top_up"
        if kind == "top_up":
            amount = draw(st.sampled_from([5_000, 10_000, 12_345, 30_000, 40_001]))
            event = paid(f"t{n}", total=yuan(amount), paid_at=RECENT)
            event["data"]["top_up"] = True
            steps.append(event)
            balance += amount
            if draw(st.booleans()):
                back = draw(st.integers(min_value=1, max_value=amount))
                steps.append(refunded(f"t{n}", f"t{n}-r", yuan(back)))
                balance -= back
        elif kind == "card":
            credit = draw(st.sampled_from(["principal", "bonus"]))
            steps.append({"type": "card", "credit_to": credit, "number": cards[credit], "key": f"c{n}"})
            cards[credit] += 1
        elif balance > 0:
            total = draw(st.integers(min_value=100, max_value=60_000))
            used = draw(st.integers(min_value=1, max_value=min(total, balance)))
            balance -= used
            event = paid(f"o{n}", total=yuan(total), paid_at=RECENT)
            event["data"]["wallet_used"] = yuan(used)
            steps.append(event)
            for r in range(draw(st.integers(min_value=0, max_value=2))):
                steps.append(refunded(f"o{n}", f"o{n}-r{r}", yuan(draw(st.integers(min_value=1, max_value=total)))))
            if draw(st.booleans()):
                steps.append(cancelled(f"o{n}"))
    return steps


# ---------------------------------------------------------------------------- the model of the documented rules


@dataclass
class Order:
    paid: dict[str, Any] | None = None
    refunds: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False
    parts: tuple[int, int] = (0, 0)  # top-up: principal and bonus put in; purchase: drawn from each
    held: tuple[int, int] = (0, 0)  # what the member holds because of it


@dataclass
class Model:
    draw: str
    principal: int = 0
    bonus: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    redeemed: set[str] = field(default_factory=set)

    def expect(self, step: dict[str, Any]) -> str:
        """What applying `step` now must answer, applying it to the model."""
        if step["type"] == "card":
            if step["key"] not in self.redeemed:
                self.redeemed.add(step["key"])
                value = CARDS[step["credit_to"]]
                if step["credit_to"] == "principal":
                    self.principal += value
                else:
                    self.bonus += value
            return "applied"
        data = step["data"]
        order = self.orders.setdefault(data["order_id"], Order())
        if step["type"] == "order.paid":
            if order.paid is not None:
                return "duplicate"
            order.paid = data
            total = _minor(data["total"])
            if data.get("top_up"):
                order.parts = (total, max((bonus for pay, bonus in PLANS if pay <= total), default=0))
            elif order.cancelled or sum(order.refunds.values()) >= total:  # undone before it arrived: draws nothing
                order.parts = (0, 0)
            else:
                order.parts = self._split(_minor(data["wallet_used"]))
        elif step["type"] == "order.refunded":
            if data["refund_id"] in order.refunds:
                return "duplicate"
            order.refunds[data["refund_id"]] = _minor(data["amount"])
        else:
            if order.cancelled:
                return "duplicate"
            order.cancelled = True
        if order.paid is None:
            return "recorded"
        self._settle(order)
        return "applied"

    def _split(self, used: int) -> tuple[int, int]:
        assert used <= self.principal + self.bonus
        if self.draw == "principal_first":
            principal = min(used, self.principal)
        elif self.draw == "bonus_first":
            principal = used - min(used, self.bonus)
        else:
            principal = used * self.principal // (self.principal + self.bonus)
        return principal, used - principal

    def _settle(self, order: Order) -> None:
        assert order.paid is not None
        total = _minor(order.paid["total"])
        refunded_ = min(sum(order.refunds.values()), total)

        def share(part: int) -> int:
            return part if order.cancelled else part * refunded_ // total

        top_up = bool(order.paid.get("top_up"))
        principal, bonus = (part - share(part) for part in order.parts)
        target = (principal, bonus) if top_up else (-principal, -bonus)
        change = [target[0] - order.held[0], target[1] - order.held[1]]
        order.held = target
        if top_up:  # a refund takes back only what is left
            change = [max(change[0], -self.principal), max(change[1], -self.bonus)]
        self.principal += change[0]
        self.bonus += change[1]


def _minor(text: str) -> int:
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


# ---------------------------------------------------------------------------- delivering


def deliver(
    service: Services, shop_id: str, steps: list[dict[str, Any]], model: Model, codes: dict[str, list[str]]
) -> None:
    """Apply each step; one the service says to retry goes to the back of the line (as SQS redelivers it later)."""
    waiting = list(steps)
    rounds = 0
    while waiting:
        rounds += 1
        assert rounds < 40 * (len(steps) + 1), f"never applied: {waiting}"
        step = waiting.pop(0)
        try:
            if step["type"] == "card":
                code = codes[step["credit_to"]][step["number"]]
                service.cards.redeem(shop_id, "m1", code=code, key=step["key"])
                outcome = "applied"
            else:
                outcome = service.orders.apply(shop_id, event_model(step))
        except Retryable as exc:
            assert exc.code == "insufficient_balance", exc
            waiting.append(step)
            continue
        assert outcome == model.expect(step), step
        assert check_wallet(service, shop_id, "m1") == (model.principal, model.bonus)


@PROPERTY
@given(history=histories(), data=st.data(), draw=st.sampled_from(["principal_first", "bonus_first", "proportional"]))
def test_any_delivery_ends_at_the_rules_balances_and_the_ledger_explains_them(
    stack: Stack, history: list[dict[str, Any]], data: st.DataObject, draw: str
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=len(history)), label="duplicates")
    shuffled = data.draw(st.permutations(history + duplicates), label="delivery order")
    program = Program.model_validate(
        {"wallet": {"top_up_plans": [{"pay": yuan(p), "bonus": yuan(b)} for p, b in PLANS], "draw": draw}}
    )
    with fresh_shop(program, ["m1"]) as (service, shop_id):
        codes = {}
        for credit, value in CARDS.items():
            batch = BatchRequest.model_validate(
                {
                    "batch_id": credit,
                    "value": yuan(value),
                    "count": 6,
                    "expires_at": "2100-01-01T00:00:00Z",
                    "credit_to": credit,
                }
            )
            codes[credit] = service.cards.issue(shop_id, batch)["codes"]
        model = Model(draw=draw)
        deliver(service, shop_id, shuffled, model, codes)
        check_invariants(service, shop_id, "m1")
