"""The DynamoDB client, item (de)serialisation, transactions, request counting and error mapping."""

import base64
import binascii
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel

from loyalty.domain.errors import Conflict, InvalidInput, Retryable
from loyalty.store import aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Item = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

# The audit scope of the API request being answered (store/audit.py's AuditScope), or None (the consumers and
# runs, whose events are their own record). While one is set, every write carries its audit entry.
AUDIT: ContextVar[Any] = ContextVar("audit", default=None)


class ConditionFailed(Conflict):
    """A single-item write's condition did not hold."""

    code = "condition_failed"

    def __init__(self, message: str, item: Item | None = None) -> None:
        super().__init__(message)
        self.item = item


class TransactionCancelled(Retryable):
    """A transaction was refused. `reasons[i]` is the code for the i-th action ('None' when it was fine)."""

    code = "transaction_cancelled"

    def __init__(self, reasons: list[str], items: list[Item | None]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items

    def failed(self, index: int) -> bool:
        return self.reasons[index] == "ConditionalCheckFailed"

    @property
    def conflicted(self) -> bool:
        return any(reason in ("TransactionConflict", "ThrottlingError") for reason in self.reasons)


def model_of(model: type[M], item: Item, **extra: Any) -> M:
    """A model from a stored item: only the model's own fields (items also carry keys and index attributes)."""
    return model.model_validate({**{key: value for key, value in item.items() if key in model.model_fields}, **extra})


def encode_cursor(key: Item) -> str:
    """A page's last key as an opaque `next` for the API."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, pk: str, prefix: str) -> Item:
    """The key a `next` continues from. It only ever continues the listing it came from (the partition `pk`, sort
    keys starting with `prefix`): never another member's or shop's (InvalidInput otherwise)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("not a cursor this API returned", field="next") from exc
    if not isinstance(key, dict) or key.get("PK") != pk or not str(key.get("SK", "")).startswith(prefix):
        raise InvalidInput("not a cursor this API returned", field="next")
    return key


def serialise(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: attribute(value) for key, value in item.items() if value is not None}


def deserialise(item: Mapping[str, Any]) -> Item:
    return {key: plain(value) for key, value in item.items()}


# Our own (de)serialiser rather than boto3's TypeSerializer, which took a tenth or more of the time our code adds to a
# request (bench/overhead.py), for the few types we store. Numbers are whole (int) or exact (Decimal); a float is
# refused, as boto3 refuses it, so no binary fraction ever becomes a balance.
def attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):  # before int: a bool is an int
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {key: attribute(inner) for key, inner in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attribute(inner) for inner in value]}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, set | frozenset) and value:
        if all(isinstance(inner, str) for inner in value):
            return {"SS": sorted(value)}
        if all(isinstance(inner, int | Decimal) and not isinstance(inner, bool) for inner in value):
            return {"NS": [str(inner) for inner in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB (floats are refused: use int or Decimal)")


def plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value; numbers as int when whole (ours are), else Decimal."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return _number(inner)
    if kind == "BOOL":
        return inner
    if kind == "M":
        return {key: plain(nested) for key, nested in inner.items()}
    if kind == "L":
        return [plain(nested) for nested in inner]
    if kind == "NULL":
        return None
    if kind == "SS" or kind == "BS":
        return set(inner)
    if kind == "NS":
        return {_number(text) for text in inner}
    if kind == "B":
        return inner
    raise TypeError(f"unknown DynamoDB attribute type {kind}")


def _number(text: str) -> int | Decimal:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else number


@dataclass
class Transaction:
    """Actions of one TransactWriteItems; the order of actions is the order of cancellation reasons."""

    table: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    audited: bool = False  # its audit entry is among the actions (a transaction sent again keeps its one entry)

    def put(
        self, item: Item, condition: str | None = None, values: Item | None = None, names: dict[str, str] | None = None
    ) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Item": serialise(item)}
        return self._add("Put", action, condition, values, names)

    def update(
        self,
        key: Item,
        expression: str,
        values: Item | None = None,
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": serialise(key), "UpdateExpression": expression}
        return self._add("Update", action, condition, values, names)

    def delete(
        self, key: Item, condition: str | None = None, values: Item | None = None, names: dict[str, str] | None = None
    ) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": serialise(key)}
        return self._add("Delete", action, condition, values, names)

    def check(self, key: Item, condition: str, values: Item | None = None, names: dict[str, str] | None = None) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": serialise(key)}
        return self._add("ConditionCheck", action, condition, values, names)

    def _add(
        self,
        kind: str,
        action: dict[str, Any],
        condition: str | None,
        values: Item | None,
        names: dict[str, str] | None,
    ) -> int:
        if condition:
            action["ConditionExpression"] = condition
            action["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if values:
            action["ExpressionAttributeValues"] = serialise(values)
        if names:
            action["ExpressionAttributeNames"] = names
        self.actions.append({kind: action})
        return len(self.actions) - 1


class Dynamo:
    """One table. Clients are made lazily, so tests can start moto first; requests are counted per operation."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = table_name or os.environ.get("TABLE_NAME", "LoyaltyTable")
        self.requests: Counter[str] = Counter()  # API calls by operation
        self.items_read = 0  # items returned by GetItem and Query: what reads cost
        self._client: DynamoDBClient | None = None

    @property
    def client(self) -> "DynamoDBClient":
        if self._client is None:
            client = aws.client("dynamodb")
            client.meta.events.register("before-call.dynamodb", self._count)
            self._client = client
        return self._client

    def _count(self, model: Any, **_: Any) -> None:
        self.requests[model.name] += 1

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> Item | None:
        response = self._call(
            self.client.get_item,
            TableName=self.table_name,
            Key=serialise({"PK": pk, "SK": sk}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            return None
        self.items_read += 1
        return deserialise(response["Item"])

    def get_many(self, keys: list[tuple[str, str]], *, consistent: bool = False) -> dict[tuple[str, str], Item]:
        """Items by (PK, SK): one BatchGetItem per 100 keys (DynamoDB's most), retrying what it leaves
        unprocessed."""
        found: dict[tuple[str, str], Item] = {}
        for first in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [serialise({"PK": pk, "SK": sk}) for pk, sk in keys[first : first + 100]],
                    "ConsistentRead": consistent,
                }
            }
            while request:
                response = self._call(self.client.batch_get_item, RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = deserialise(raw)
                    found[(item["PK"], item["SK"])] = item
                    self.items_read += 1
                request = response.get("UnprocessedKeys") or {}
        return found

    def put(self, item: Item, condition: str | None = None, values: Item | None = None) -> None:
        if AUDIT.get() is not None:
            tx = self.transaction()
            tx.put(item, condition=condition, values=values)
            return self._commit_single(tx)
        params: dict[str, Any] = {"TableName": self.table_name, "Item": serialise(item)}
        if condition:
            params["ConditionExpression"] = condition
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if values:
            params["ExpressionAttributeValues"] = serialise(values)
        self._call(self.client.put_item, **params)

    def update(
        self,
        pk: str,
        sk: str,
        expression: str,
        *,
        values: Item | None = None,
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        if AUDIT.get() is not None:
            tx = self.transaction()
            tx.update({"PK": pk, "SK": sk}, expression, values=values, condition=condition, names=names)
            return self._commit_single(tx)
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": serialise({"PK": pk, "SK": sk}),
            "UpdateExpression": expression,
        }
        if condition:
            params["ConditionExpression"] = condition
        if values:
            params["ExpressionAttributeValues"] = serialise(values)
        if names:
            params["ExpressionAttributeNames"] = names
        self._call(self.client.update_item, **params)

    def query_page(
        self,
        pk: str,
        prefix: str,
        *,
        limit: int,
        newest_first: bool = False,
        start: Item | None = None,
        consistent: bool = True,
    ) -> tuple[list[Item], Item | None]:
        # An empty prefix is the whole partition (DynamoDB refuses begins_with an empty string).
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)" if prefix else "PK = :pk",
            "ExpressionAttributeValues": serialise({":pk": pk, **({":prefix": prefix} if prefix else {})}),
            "ScanIndexForward": not newest_first,
            "Limit": limit,
            "ConsistentRead": consistent,
        }
        return self._page(self.client.query, params, start)

    def query_between(
        self,
        pk: str,
        low: str,
        high: str,
        *,
        limit: int,
        start: Item | None = None,
        filter: str | None = None,
        values: Item | None = None,
    ) -> tuple[list[Item], Item | None]:
        """A page of the partition's items with sort keys from `low` to `high`, oldest first, kept by `filter`
        (DynamoDB reads, and bills, the items the filter drops too)."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
            "ExpressionAttributeValues": serialise({":pk": pk, ":low": low, ":high": high, **(values or {})}),
            "Limit": limit,
        }
        if filter:
            params["FilterExpression"] = filter
        return self._page(self.client.query, params, start)

    def cursor_page(
        self, pk: str, prefix: str, *, limit: int, cursor: str | None, newest_first: bool = False
    ) -> tuple[list[Item], str | None]:
        """A page of a partition for the API: `cursor` (a `next` it answered before) says where it continues, and
        only ever continues this listing (InvalidInput otherwise); the page's own `next`, or None at the end."""
        start = decode_cursor(cursor, pk, prefix) if cursor else None
        items, last = self.query_page(pk, prefix, limit=limit, newest_first=newest_first, start=start, consistent=False)
        return items, encode_cursor(last) if last else None

    def query_all(self, pk: str, prefix: str) -> Iterator[Item]:
        start: Item | None = None
        while True:
            items, start = self.query_page(pk, prefix, limit=200, start=start)
            yield from items
            if start is None:
                return

    def query_due(
        self, due_pk: str, until: str, *, start: Item | None = None, limit: int = 100
    ) -> tuple[list[Item], Item | None]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "DueIndex",
            "KeyConditionExpression": "DuePK = :pk AND DueSK <= :until",
            "ExpressionAttributeValues": serialise({":pk": due_pk, ":until": until}),
            "Limit": limit,
        }
        return self._page(self.client.query, params, start)

    def query_members(
        self, members_pk: str, *, start: Item | None = None, limit: int = 1000
    ) -> tuple[list[Item], Item | None]:
        """A page of one MembersIndex partition: member ids (MembersSK) and their tiers."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "MembersIndex",
            "KeyConditionExpression": "MembersPK = :pk",
            "ExpressionAttributeValues": serialise({":pk": members_pk}),
            "Limit": limit,
        }
        return self._page(self.client.query, params, start)

    def query_index(
        self, index: str, key: str, value: str, *, start: Item | None = None, limit: int = 100
    ) -> tuple[list[Item], Item | None]:
        """A page of one partition of a global secondary index (`key` its partition key attribute)."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": "#key = :value",
            "ExpressionAttributeNames": {"#key": key},
            "ExpressionAttributeValues": serialise({":value": value}),
            "Limit": limit,
        }
        return self._page(self.client.query, params, start)

    def scan_page(
        self, condition: str, values: Item, *, segment: int, segments: int, start: Item | None = None, limit: int = 500
    ) -> tuple[list[Item], Item | None]:
        """One page of one segment of a parallel Scan, filtered. Only for one-off migrations an operator runs:
        a scheduled job never scans (its cost would grow with the table)."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": condition,
            "ExpressionAttributeValues": serialise(values),
            "Segment": segment,
            "TotalSegments": segments,
            "Limit": limit,
        }
        return self._page(self.client.scan, params, start)

    def _page(self, method: Any, params: dict[str, Any], start: Item | None) -> tuple[list[Item], Item | None]:
        """One page of a Query or Scan from `start`, counting what DynamoDB read: (items, where the next starts)."""
        if start:
            params["ExclusiveStartKey"] = serialise(start)
        response = self._call(method, **params)
        self.items_read += int(response.get("ScannedCount", len(response["Items"])))
        last = response.get("LastEvaluatedKey")
        return [deserialise(item) for item in response["Items"]], deserialise(last) if last else None

    def export_to_s3(self, bucket: str, prefix: str, *, client_token: str) -> dict[str, Any]:
        """Start a point-in-time export of the whole table to S3 (DYNAMODB_JSON); its id and status."""
        arn = self._call(self.client.describe_table, TableName=self.table_name)["Table"]["TableArn"]
        started = self._call(
            self.client.export_table_to_point_in_time,
            TableArn=arn,
            S3Bucket=bucket,
            S3Prefix=prefix,
            ExportFormat="DYNAMODB_JSON",
            ClientToken=client_token,
        )["ExportDescription"]
        return {"export_arn": started["ExportArn"], "status": started["ExportStatus"]}

    def transaction(self) -> Transaction:
        return Transaction(self.table_name)

    def _commit_single(self, tx: Transaction) -> None:
        """One write sent as a transaction (with its audit entry): its condition failing is ConditionFailed, as
        the single write's would be."""
        try:
            self.commit(tx)
        except TransactionCancelled as exc:
            if exc.failed(0):
                raise ConditionFailed("condition failed", exc.items[0]) from exc
            raise

    def commit(self, tx: Transaction) -> None:
        if not tx.actions:
            return
        scope = AUDIT.get()
        if scope is not None and not tx.audited:
            scope.add_entry(tx)
            tx.audited = True
        try:
            self.client.transact_write_items(TransactItems=tx.actions)  # type: ignore[arg-type]
        except aws.TRANSPORT_ERRORS as exc:
            raise Retryable(f"dynamodb is unreachable ({type(exc).__name__})") from exc
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons", [])
                raise TransactionCancelled(
                    [reason.get("Code", "None") for reason in reasons],
                    [deserialise(reason["Item"]) if "Item" in reason else None for reason in reasons],
                ) from exc
            raise _translate(exc) from exc

    def _call(self, method: Any, **params: Any) -> Any:
        try:
            return method(**params)
        except aws.TRANSPORT_ERRORS as exc:
            raise Retryable(f"dynamodb is unreachable ({type(exc).__name__})") from exc
        except ClientError as exc:
            raise _translate(exc) from exc


def _translate(exc: ClientError) -> Exception:
    code = exc.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        item: Any = exc.response.get("Item")
        return ConditionFailed("condition failed", deserialise(item) if item else None)
    return aws.translate("dynamodb", exc)
