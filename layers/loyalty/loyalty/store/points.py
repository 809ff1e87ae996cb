"""The points account's items (a member's lots and ledger) and the one function that writes any move to them.

Every change to a member's points (an order settled, a redemption, a lot expired, a check-in, any other grant)
reaches DynamoDB through `add_move`, inside the transaction that also records the change's cause. The move's
balance change, lot changes and ledger entries are written together, so the balance, the ledger and the lots
cannot drift apart.
"""

from datetime import datetime, timedelta
from typing import Any

from loyalty.domain.errors import Conflict
from loyalty.domain.ledger import Balance, Draw, LedgerEntry, Lot, iso
from loyalty.domain.points import Move
from loyalty.store.dynamo import Dynamo, Item, Transaction, model_of
from loyalty.store.keys import (
    EXPIRE_JOB,
    LEDGER_PREFIX,
    LOT_PREFIX,
    REMIND_JOB,
    REMIND_PREFIX,
    WALLET_REMIND_PREFIX,
    due_keys,
    ledger_sk,
    member_pk,
    remind_sk,
)
from loyalty.store.members import TierUpdate, add_member_update

# A transaction holds at most 100 actions; keep room for the order, member, ledger and idempotency items.
MAX_DRAWS = 90
# Lots of one member lapsed in one transaction: 2 actions each (the lot, its order's count of lapsed points),
# with the member and the ledger entry, within the 100 actions.
MAX_TOGETHER = 40


def add_move(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    move: Move,
    *,
    guard: Balance,
    now: datetime,
    shards: int,
    remind_days: int = 0,
    tier: TierUpdate | None = None,
    first_order: str | None = None,
) -> None:
    """Add one move to `tx`: the member's balance (required unchanged from `guard` in what the move read), its new,
    drawn and returned lots, and its ledger entries. `tier` changes the member's tier state in the same update
    (DynamoDB allows one action per item in a transaction), as does `first_order` (the member's first paid order)."""
    add_member_update(
        tx,
        shop_id,
        member_id,
        available=move.available,
        pending=move.pending,
        debt=move.debt,
        now=now,
        expect_available=guard.available if move.reads == "all" else None,
        expect_debt=guard.debt if move.reads in ("all", "debt") else None,
        at_least=move.at_least or None,
        tier=tier,
        first_order=first_order,
    )
    add_move_parts(tx, shop_id, member_id, move, now=now, shards=shards, remind_days=remind_days)


def add_move_parts(
    tx: Transaction, shop_id: str, member_id: str, move: Move, *, now: datetime, shards: int, remind_days: int = 0
) -> None:
    """A move's lots and ledger entries, without the member's balance: for a member written in the same
    transaction with the balance already in it (an import's opening balance)."""
    for lot in move.lots:
        add_lot(tx, shop_id, member_id, lot, now=now, shards=shards, remind_days=remind_days)
    add_draws(tx, shop_id, member_id, move.draws)
    for lot in move.returned:
        add_returned_lot(tx, shop_id, member_id, lot, now=now, shards=shards)
    for entry in move.entries:
        _add_entry(tx, shop_id, member_id, entry)


# ---------------------------------------------------------------------------- reads


def lots(db: Dynamo, shop_id: str, member_id: str, *, prefix: str = LOT_PREFIX) -> list[Lot]:
    """Every lot with points (or, with the wallet's prefix, bonus) left, oldest-expiring first (the sort key's
    order)."""
    return [lot_of(item, prefix) for item in db.query_all(member_pk(shop_id, member_id), prefix)]


def lots_expiring_at(
    db: Dynamo, shop_id: str, member_id: str, expires_at: datetime, *, prefix: str = LOT_PREFIX
) -> int:
    """What the member's lots (of points, or with the wallet's prefix of bonus) expiring at that instant hold."""
    begins = f"{prefix}{iso(expires_at)}#"
    return sum(int(item["remaining"]) for item in db.query_all(member_pk(shop_id, member_id), begins))


def get_lot(db: Dynamo, pk: str, sk: str, *, prefix: str = LOT_PREFIX) -> Lot | None:
    item = db.get(pk, sk)
    return lot_of(item, prefix) if item else None


def lot_from_index(item: Item, *, prefix: str = LOT_PREFIX) -> Lot | None:
    """The lot as the due index projects it (possibly a little stale: writes condition on `remaining`)."""
    try:
        return lot_of(item, prefix)
    except (KeyError, ValueError):
        return None


def ledger_page(
    db: Dynamo, shop_id: str, member_id: str, *, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    """A page of the member's ledger, newest first, and the cursor of the next."""
    items, next_cursor = db.cursor_page(
        member_pk(shop_id, member_id), LEDGER_PREFIX, limit=limit, cursor=cursor, newest_first=True
    )
    return [model_of(LedgerEntry, item) for item in items], next_cursor


def ledger_all(db: Dynamo, shop_id: str, member_id: str) -> list[LedgerEntry]:
    """Oldest first; for audits and tests."""
    return [model_of(LedgerEntry, item) for item in db.query_all(member_pk(shop_id, member_id), LEDGER_PREFIX)]


# ---------------------------------------------------------------------------- the parts of a move
# Lots of points, and (with `prefix` WALLET_LOT_PREFIX) the wallet's bonus lots, which expire and are drawn alike.


def add_lot(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    lot: Lot,
    *,
    now: datetime,
    shards: int,
    remind_days: int = 0,
    prefix: str = LOT_PREFIX,
) -> None:
    """A new lot; one that expires is listed in the due index for the expiry run, and its member's reminder
    for that expiry instant is listed for the reminder run `remind_days` ahead."""
    pk, sk = member_pk(shop_id, member_id), f"{prefix}{lot.lot_id}"
    item: Item = {"PK": pk, "SK": sk, "type": _kind(prefix), **lot.model_dump(mode="json", exclude={"lot_id"})}
    if lot.expires_at is not None:
        # A lot that is already past its expiry (a very late event) is due at once, in today's partition.
        item["DuePK"], item["DueSK"] = due_keys(EXPIRE_JOB, lot.expires_at, pk, shards, sk, now=now)
    tx.put(item, condition="attribute_not_exists(SK)")
    if lot.expires_at is not None and remind_days > 0:
        remind_at = lot.expires_at - timedelta(days=remind_days)
        reminder = remind_sk(lot.expires_at, REMIND_PREFIX if prefix == LOT_PREFIX else WALLET_REMIND_PREFIX)
        due_pk_, due_sk_ = due_keys(REMIND_JOB, remind_at, pk, shards, reminder, now=now)
        # Re-listing a reminder that was already sent is harmless: the run sends each one once (reminded_at).
        tx.update(
            {"PK": pk, "SK": reminder},
            "SET #type = :type, expires_at = :expires, DuePK = :due_pk, DueSK = :due_sk",
            values={":type": "reminder", ":expires": iso(lot.expires_at), ":due_pk": due_pk_, ":due_sk": due_sk_},
            names={"#type": "type"},
        )


def add_returned_lot(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    lot: Lot,
    *,
    now: datetime,
    shards: int,
    prefix: str = LOT_PREFIX,
) -> None:
    """Points given back to a lot like the one they were spent from: created, or grown if an earlier partial
    refund made it already (and the member may have spent from it since)."""
    pk, sk = member_pk(shop_id, member_id), f"{prefix}{lot.lot_id}"
    sets = "#type = :type, earned_at = :earned, #source = :source, #reference = :ref"
    values: dict[str, Any] = {
        ":n": lot.remaining,
        ":type": _kind(prefix),
        ":earned": iso(lot.earned_at),
        ":source": lot.source,
        ":ref": lot.reference,
    }
    if lot.expires_at is not None:
        sets += ", expires_at = :expires, DuePK = :due_pk, DueSK = :due_sk"
        due_pk_, due_sk_ = due_keys(EXPIRE_JOB, lot.expires_at, pk, shards, sk, now=now)
        values |= {":expires": iso(lot.expires_at), ":due_pk": due_pk_, ":due_sk": due_sk_}
    tx.update(
        {"PK": pk, "SK": sk},
        f"ADD remaining :n, granted :n SET {sets}",
        values=values,
        names={"#type": "type", "#source": "source", "#reference": "reference"},
    )


def add_draws(tx: Transaction, shop_id: str, member_id: str, draws: list[Draw], *, prefix: str = LOT_PREFIX) -> None:
    """Each draw takes from a lot whose remainder must be what it was read as; an emptied lot is deleted."""
    if len(draws) > MAX_DRAWS:
        raise Conflict(f"this would draw on {len(draws)} lots; at most {MAX_DRAWS} at once", field="points")
    for item in draws:
        key = {"PK": member_pk(shop_id, member_id), "SK": f"{prefix}{item.lot_id}"}
        if item.take == item.remaining_before:
            tx.delete(key, condition="remaining = :before", values={":before": item.remaining_before})
        else:
            tx.update(
                key,
                "ADD remaining :minus",
                values={":minus": -item.take, ":before": item.remaining_before},
                condition="remaining = :before",
            )


def _add_entry(tx: Transaction, shop_id: str, member_id: str, entry: LedgerEntry) -> int:
    return tx.put(
        {
            "PK": member_pk(shop_id, member_id),
            "SK": ledger_sk(entry.at, entry.reason, entry.reference, entry.part),
            "type": "ledger",
            **entry.model_dump(mode="json"),
        },
        condition="attribute_not_exists(SK)",
    )


def _kind(prefix: str) -> str:
    return "lot" if prefix == LOT_PREFIX else "bonus_lot"


def lot_of(item: Item, prefix: str = LOT_PREFIX) -> Lot:
    return model_of(Lot, item, lot_id=item["SK"].removeprefix(prefix))
