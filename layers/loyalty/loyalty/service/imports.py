"""Bringing a shop's existing members in: rows of up to BATCH members, each enrolled in one transaction with its
opening balance (points of source `import`, expiring by the row's date or the program's policy for imports) and
its tier. Each row stands alone: a bad row is answered with its reason and the others go on; a row already
imported with the same details is answered `exists` and changes nothing, so a batch can be sent again."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError

from loyalty.domain import points as account
from loyalty.domain.errors import Conflict, DomainError, InvalidInput, first_problem
from loyalty.domain.expiry import expires_at
from loyalty.domain.ledger import Balance
from loyalty.domain.members import Profile
from loyalty.domain.tiers import TierChange
from loyalty.service.members import Members
from loyalty.store import members as member_store
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo, Transaction

BATCH = 100


class ImportRow(Profile):
    """A member as a shop's old system knew them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)] = 0
    points_expire_at: datetime | None = Field(
        default=None, description="when the opening points lapse (default: the program's policy for `import`)"
    )
    tier: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class Imports:
    def __init__(self, db: Dynamo, members: Members, *, clock: Callable[[], datetime], shards: int) -> None:
        self.db = db
        self.members = members
        self.clock = clock
        self.shards = shards

    def import_rows(self, shop_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(rows) > BATCH:
            raise InvalidInput(f"at most {BATCH} members a request", field="members")
        return [self._row(shop_id, raw) for raw in rows]

    def _row(self, shop_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        member_id = raw.get("member_id") if isinstance(raw, dict) else None
        try:
            row = ImportRow.model_validate(raw)
        except ValidationError as exc:
            where, what = first_problem(exc)
            return {"member_id": member_id, "status": "rejected", "error": {"code": "invalid", "field": where,
                                                                            "message": what}}  # fmt: skip
        try:
            created = self._enrol(shop_id, row)
        except DomainError as exc:
            status = "duplicate" if isinstance(exc, Conflict) else "rejected"
            return {"member_id": row.member_id, "status": status,
                    "error": {"code": exc.code, "field": exc.field, "message": exc.message}}  # fmt: skip
        return {"member_id": row.member_id, "status": "created" if created else "exists"}

    def _enrol(self, shop_id: str, row: ImportRow) -> bool:
        program = self.members.shops.program(shop_id)
        now = self.clock()
        profile, birthday = self.members.as_kept(
            program, Profile(member_id=row.member_id, phone=row.phone, email=row.email, birthday=row.birthday), now
        )
        opening = None
        if row.points:
            lapse = row.points_expire_at or expires_at(program.expiry_rule("import"), now, program.timezone)
            if lapse is not None and lapse <= now:
                raise InvalidInput("opening points that have already lapsed", field="points_expire_at")
            move = account.grant(
                Balance(), row.points, reason="points.imported", reference="import", at=now, source="import",
                earned_at=now, expires_at=lapse,
            )  # fmt: skip

            def add(tx: Transaction, move: account.Move = move) -> None:
                point_store.add_move_parts(
                    tx, shop_id, row.member_id, move, now=now, shards=self.shards,
                    remind_days=program.expiry_reminder_days,
                )  # fmt: skip

            opening = (row.points, add)
        tier = None
        if row.tier is not None:
            names = [tier.name for tier in program.tiers]
            if row.tier not in names:
                raise InvalidInput(f"not a tier of the program ({', '.join(names) or 'none'})", field="tier")
            review = now + timedelta(days=program.tier_valid_days) if names.index(row.tier) > 0 else None
            tier = TierChange(to_tier=row.tier, reason="import", at=now, metric=0, review_at=review)
        created, _ = member_store.enrol(
            self.db, shop_id, profile, now, birthday=birthday,
            shards=self.shards, opening=opening, tier=tier,
        )  # fmt: skip
        return created
