"""Shops and their programs."""

from dataclasses import dataclass
from datetime import datetime

from loyalty.domain.errors import Conflict
from loyalty.domain.ledger import iso
from loyalty.domain.program import Program
from loyalty.store.dynamo import Dynamo, TransactionCancelled
from loyalty.store.keys import PROGRAM_SK, SHOP_SK, shop_pk


@dataclass(frozen=True)
class ShopRecord:
    shop_id: str
    name: str
    api_key_sha256: str
    webhook_secret: str


def create_shop(db: Dynamo, shop: ShopRecord, program: Program, now: datetime) -> None:
    tx = db.transaction()
    tx.put(
        {
            "PK": shop_pk(shop.shop_id),
            "SK": SHOP_SK,
            "type": "shop",
            "shop_id": shop.shop_id,
            "name": shop.name,
            "api_key_sha256": shop.api_key_sha256,
            "webhook_secret": shop.webhook_secret,
            "created_at": iso(now),
        },
        condition="attribute_not_exists(PK)",
    )
    tx.put(_program_item(shop.shop_id, program, now))
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        raise Conflict("shop id already taken", field="shop_id") from exc


def get_shop(db: Dynamo, shop_id: str) -> ShopRecord | None:
    item = db.get(shop_pk(shop_id), SHOP_SK, consistent=False)
    if item is None:
        return None
    return ShopRecord(item["shop_id"], item["name"], item["api_key_sha256"], item["webhook_secret"])


def get_program(db: Dynamo, shop_id: str) -> Program | None:
    item = db.get(shop_pk(shop_id), PROGRAM_SK, consistent=False)
    return Program.model_validate(item["program"]) if item else None


def put_program(db: Dynamo, shop_id: str, program: Program, now: datetime) -> None:
    db.put(
        _program_item(shop_id, program, now),
        condition="attribute_exists(PK)",
    )


def _program_item(shop_id: str, program: Program, now: datetime) -> dict[str, object]:
    return {
        "PK": shop_pk(shop_id),
        "SK": PROGRAM_SK,
        "type": "program",
        "program": program.model_dump(mode="json"),
        "updated_at": iso(now),
    }
