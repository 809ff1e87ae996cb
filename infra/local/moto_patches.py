"""A patch to moto, applied by the local stack and the tests: a transaction's rollback copies the items it touches,
not whole tables.

moto's DynamoDB `transact_write_items` deep-copies every table a transaction names, once per action, so that it
can put the table back if a condition fails (moto 5.2, `moto/dynamodb/models/__init__.py`). Its cost grows with the
table: 13 ms for a 4-action transaction on 100 items, 90 ms on 1,000, 350 ms on 4,000, and the copies are kept
for moto's dashboard until released. DynamoDB's cost does not depend on the table's size.

The patch keeps moto's own code for the transaction and changes what is saved: before any action runs, each
item the transaction touches is copied (or noted as absent); if moto then refuses the transaction, those items
are put back as they were (absent ones removed) and moto's error is raised unchanged. moto keeps no index of its
own (a query of a global secondary index reads the table's items), so restoring the items restores the indexes.
What it does not restore: records already added to a table's stream (none of our tables has one).

Proposed upstream as: "transact_write_items: back up touched items instead of whole tables".
"""

import copy
import types
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_applied = False


def apply() -> None:
    """Idempotent: patch moto's DynamoDB backend in this process."""
    global _applied
    if _applied:
        return
    _applied = True

    def deepcopy(value: Any, memo: Any = None) -> Any:
        # moto's whole-table backup becomes the table itself: nothing is copied; rollback is ours (below).
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    setattr(dynamodb_models, "copy", types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy))  # noqa: B010
    original: Callable[[DynamoDBBackend, list[dict[str, Any]]], None] = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved = [_save(self, entry) for entry in transact_items[:100]]
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed([s for s in saved if s is not None]):
                _restore(table, hash_value, range_value, item)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


Saved = tuple[Table, DynamoType, DynamoType | None, Any]


def _save(backend: DynamoDBBackend, entry: dict[str, Any]) -> Saved | None:
    """The item an action touches, as it is now (a deep copy, since moto updates items in place), or None."""
    try:
        _, action = next(iter(entry.items()))
        table = backend.get_table(action["TableName"])
        key = action.get("Key") or action["Item"]
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    except Exception:  # a malformed action: moto refuses it before writing anything
        return None
    current = table.get_item(hash_value, range_value)
    return table, hash_value, range_value, copy.deepcopy(current)


def _restore(table: Table, hash_value: DynamoType, range_value: DynamoType | None, item: Any) -> None:
    if item is None:
        table.delete_item(hash_value, range_value)
    elif range_value is not None:
        table.items[hash_value][range_value] = item
    else:
        table.items[hash_value] = item
