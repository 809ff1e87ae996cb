"""A member's wallet (stored value), its ledger and the member's savings by month.

Every change to a wallet reaches DynamoDB through `add_move`, inside the transaction that records its cause (an
order's state, a gift card's redemption): the balance and the entry that explains it are written together.
"""

from datetime import datetime
from typing import Any

from loyalty.domain.ledger import Lot, iso
from loyalty.domain.wallet import WalletBalance, WalletEntry, WalletMove
from loyalty.store import points
from loyalty.store.dynamo import Dynamo, Item, Transaction, model_of
from loyalty.store.keys import (
    PROFILE_SK,
    SAVINGS_PREFIX,
    WALLET_LEDGER_PREFIX,
    WALLET_LOT_PREFIX,
    WALLET_SK,
    idempotency_key,
    member_pk,
    wallet_ledger_sk,
)

SAVINGS_FIGURES = ("coupons", "points", "member_price", "bonus")


def get_wallet(db: Dynamo, shop_id: str, member_id: str) -> WalletBalance:
    return _balance(db.get(member_pk(shop_id, member_id), WALLET_SK))


def request_state(
    db: Dynamo, shop_id: str, member_id: str, scope: str, key: str
) -> tuple[bool, Item | None, WalletBalance]:
    """What a wallet request is decided on, all in the member's partition, in one BatchGetItem (strongly
    consistent): whether the member exists, the stored answer to its idempotency key, and the wallet."""
    pk = member_pk(shop_id, member_id)
    record = idempotency_key(shop_id, member_id, scope, key)
    found = db.get_many([(pk, PROFILE_SK), record, (pk, WALLET_SK)], consistent=True)
    return (pk, PROFILE_SK) in found, found.get(record), _balance(found.get((pk, WALLET_SK)))


def _balance(item: Item | None) -> WalletBalance:
    if item is None:
        return WalletBalance()
    return WalletBalance(principal=int(item["principal"]), bonus=int(item["bonus"]), version=int(item["version"]))


def add_move(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    move: WalletMove,
    *,
    now: datetime,
    shards: int,
    remind_days: int = 0,
) -> None:
    """The wallet changed by `move` only if it is still at the version the move was computed from (so a draw is
    never made against a balance that has since been spent; a move computed without reading it, a lot lapsing,
    requires only that the wallet holds what it takes), then its bonus lots (a new one that expires is listed for
    its reminder `remind_days` ahead) and its entries."""
    pk = member_pk(shop_id, member_id)
    values: dict[str, Any] = {":p": move.principal, ":b": move.bonus, ":one": 1, ":type": "wallet", ":now": iso(now)}
    if move.version is None:
        condition = "bonus >= :taken AND principal >= :taken_p"
        values |= {":taken": max(-move.bonus, 0), ":taken_p": max(-move.principal, 0)}
    elif move.version:
        condition = "version = :v"
        values[":v"] = move.version
    else:
        condition = "attribute_not_exists(version)"
    tx.update(
        {"PK": pk, "SK": WALLET_SK},
        "ADD principal :p, bonus :b, version :one SET #type = :type, updated_at = :now",
        values=values,
        condition=condition,
        names={"#type": "type"},
    )
    for lot in move.lots:
        points.add_lot(
            tx, shop_id, member_id, lot, now=now, shards=shards, remind_days=remind_days, prefix=WALLET_LOT_PREFIX
        )
    points.add_draws(tx, shop_id, member_id, move.draws, prefix=WALLET_LOT_PREFIX)
    for lot in move.returned:
        points.add_returned_lot(tx, shop_id, member_id, lot, now=now, shards=shards, prefix=WALLET_LOT_PREFIX)
    for entry in move.entries:
        tx.put(
            {
                "PK": pk,
                "SK": wallet_ledger_sk(entry.at, entry.reason, entry.reference, entry.part),
                "type": "wallet_entry",
                **entry.model_dump(mode="json"),
            },
            condition="attribute_not_exists(SK)",
        )


def bonus_lots(db: Dynamo, shop_id: str, member_id: str) -> list[Lot]:
    """The wallet's bonus lots with bonus left, oldest-expiring first."""
    return points.lots(db, shop_id, member_id, prefix=WALLET_LOT_PREFIX)


def bonus_expiring_at(db: Dynamo, shop_id: str, member_id: str, expires_at: datetime) -> int:
    return points.lots_expiring_at(db, shop_id, member_id, expires_at, prefix=WALLET_LOT_PREFIX)


def bonus_lot_from_index(item: Item) -> Lot | None:
    return points.lot_from_index(item, prefix=WALLET_LOT_PREFIX)


def get_bonus_lot(db: Dynamo, pk: str, sk: str) -> Lot | None:
    return points.get_lot(db, pk, sk, prefix=WALLET_LOT_PREFIX)


def add_savings(tx: Transaction, shop_id: str, member_id: str, month: str, savings: dict[str, int]) -> None:
    """Add an order's savings (minor units by figure) to the member's month."""
    names = {f"#{name}": name for name in savings}
    adds = ", ".join(f"#{name} :{name}" for name in savings)
    tx.update(
        {"PK": member_pk(shop_id, member_id), "SK": f"{SAVINGS_PREFIX}{month}"},
        f"ADD {adds} SET #type = :type",
        values={**{f":{name}": value for name, value in savings.items()}, ":type": "savings"},
        names={**names, "#type": "type"},
    )


def savings(db: Dynamo, shop_id: str, member_id: str) -> dict[str, dict[str, int]]:
    """The member's savings by local month (oldest first), each figure in minor units."""
    months: dict[str, dict[str, int]] = {}
    for item in db.query_all(member_pk(shop_id, member_id), SAVINGS_PREFIX):
        months[item["SK"].removeprefix(SAVINGS_PREFIX)] = {name: int(item.get(name, 0)) for name in SAVINGS_FIGURES}
    return months


def ledger_page(
    db: Dynamo, shop_id: str, member_id: str, *, limit: int, cursor: str | None
) -> tuple[list[WalletEntry], str | None]:
    """A page of the wallet's ledger, newest first, and the cursor of the next."""
    items, next_cursor = db.cursor_page(
        member_pk(shop_id, member_id), WALLET_LEDGER_PREFIX, limit=limit, cursor=cursor, newest_first=True
    )
    return [model_of(WalletEntry, item) for item in items], next_cursor


def ledger_all(db: Dynamo, shop_id: str, member_id: str) -> list[WalletEntry]:
    """Oldest first; for audits and tests."""
    return [model_of(WalletEntry, item) for item in db.query_all(member_pk(shop_id, member_id), WALLET_LEDGER_PREFIX)]
