"""Shops and their programs."""

from dataclasses import dataclass
from datetime import date, datetime

from loyalty.domain.errors import Conflict
from loyalty.domain.ledger import iso
from loyalty.domain.program import Program
from loyalty.store.api_keys import ApiKey, add_key
from loyalty.store.dynamo import Dynamo, Transaction, TransactionCancelled
from loyalty.store.keys import MONTHLY_JOB, MONTHLY_SK, PROGRAM_SK, SHOP_SK, due_keys, shop_pk


@dataclass(frozen=True)
class ShopRecord:
    shop_id: str
    name: str
    webhook_secret: str
    pseudonym_key: str  # keys the members' pseudonyms in the audit trail (domain/members.pseudonym)


def create_shop(db: Dynamo, shop: ShopRecord, program: Program, owner: ApiKey, now: datetime) -> None:
    """The shop, its program and its first owner key, at once."""
    tx = db.transaction()
    tx.put(
        {
            "PK": shop_pk(shop.shop_id),
            "SK": SHOP_SK,
            "type": "shop",
            "shop_id": shop.shop_id,
            "name": shop.name,
            "webhook_secret": shop.webhook_secret,
            "pseudonym_key": shop.pseudonym_key,
            "created_at": iso(now),
        },
        condition="attribute_not_exists(PK)",
    )
    tx.put(_program_item(shop.shop_id, program, now))
    add_key(tx, shop.shop_id, owner)
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        raise Conflict("shop id already taken", field="shop_id") from exc


def get_shop(db: Dynamo, shop_id: str) -> ShopRecord | None:
    item = db.get(shop_pk(shop_id), SHOP_SK, consistent=False)
    if item is None:
        return None
    return ShopRecord(item["shop_id"], item["name"], item["webhook_secret"], item["pseudonym_key"])


def get_program(db: Dynamo, shop_id: str) -> Program | None:
    item = db.get(shop_pk(shop_id), PROGRAM_SK, consistent=False)
    return Program.model_validate(item["program"]) if item else None


def put_program(
    db: Dynamo, shop_id: str, program: Program, now: datetime, *, monthly: tuple[date, datetime] | None, shards: int
) -> None:
    """Save the program. With `monthly` (the next 1st and the instant it begins), file the shop for the monthly
    coupons run in the same transaction, unless it is filed already: the run re-files it each month."""
    tx = db.transaction()
    tx.put(_program_item(shop_id, program, now), condition="attribute_exists(PK)")
    if monthly is not None:
        add_next_month(tx, shop_id, *monthly, now=now, shards=shards)
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if exc.failed(0):
            raise Conflict(f"shop {shop_id} not found", field="shop_id") from exc
        raise


def add_next_month(
    tx: Transaction,
    shop_id: str,
    month: date,
    starts: datetime,
    *,
    now: datetime,
    shards: int,
    replacing: date | None = None,
) -> None:
    """File the shop's next 1st (due when it begins) for the monthly coupons run. `replacing`: the month a run has
    just handled, which must still be the one filed (so each month is handled once); without it, an existing
    filing is kept."""
    pk = shop_pk(shop_id)
    due_pk_, due_sk_ = due_keys(MONTHLY_JOB, starts, pk, shards, MONTHLY_SK, now=now)
    values = {":m": month.isoformat(), ":due_pk": due_pk_, ":due_sk": due_sk_, ":type": "monthly"}
    if replacing is None:
        expression = (
            "SET #type = :type, #month = if_not_exists(#month, :m), DuePK = if_not_exists(DuePK, :due_pk), "
            "DueSK = if_not_exists(DueSK, :due_sk)"
        )
        tx.update({"PK": pk, "SK": MONTHLY_SK}, expression, values=values, names={"#type": "type", "#month": "month"})
        return
    tx.update(
        {"PK": pk, "SK": MONTHLY_SK},
        "SET #type = :type, #month = :m, DuePK = :due_pk, DueSK = :due_sk",
        values=values | {":handled": replacing.isoformat()},
        condition="#month = :handled",
        names={"#type": "type", "#month": "month"},
    )


def filed_month(db: Dynamo, shop_id: str) -> date | None:
    """The 1st the shop is filed for in the monthly coupons run."""
    item = db.get(shop_pk(shop_id), MONTHLY_SK)
    return date.fromisoformat(item["month"]) if item else None


def _program_item(shop_id: str, program: Program, now: datetime) -> dict[str, object]:
    return {
        "PK": shop_pk(shop_id),
        "SK": PROGRAM_SK,
        "type": "program",
        "program": program.model_dump(mode="json"),
        "updated_at": iso(now),
    }
