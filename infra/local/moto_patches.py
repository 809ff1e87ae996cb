"""Patches to moto, applied by the local stack and the tests, so that a request's cost does not grow with the
table's size, as it does not on DynamoDB.

1. A transaction's rollback copies the items it touches, not whole tables.

moto's DynamoDB `transact_write_items` deep-copies every table a transaction names, once per action, so that it
can put the table back if a condition fails (moto 5.2, `moto/dynamodb/models/__init__.py`). Its cost grows with the
table: 13 ms for a 4-action transaction on 100 items, 90 ms on 1,000, 350 ms on 4,000, and the copies are kept
for moto's dashboard until released. DynamoDB's cost does not depend on the table's size.

The patch keeps moto's own code for the transaction and changes what is saved: before any action runs, each
item the transaction touches is copied (or noted as absent); if moto then refuses the transaction, those items
are put back as they were (absent ones removed) and moto's error is raised unchanged. moto keeps no index of its
own (a query of a global secondary index reads the table's items), so restoring the items restores the indexes.
Records the refused transaction's actions had added to a table's stream are taken off it too (DynamoDB streams
only what was written). A stream record is not sized by dumping it to JSON, and GetRecords returns the records,
which moto keeps as wire JSON already, without walking each image's attributes through moto's model-driven
serializer (28% of the local stack's time per order once the aggregator read the stream).

Proposed upstream as: "transact_write_items: back up touched items instead of whole tables".

2. A query of the table (not of an index) reads its one partition, not every item. moto's `Table.query` takes
`self.all_items()` (every item of the table, sorted) and keeps those whose hash key matches: a member's GetItem is
O(1), but reading the same member's partition with Query cost 40 ms at 100,000 members. The patch leaves moto's
query as it is and, for the duration of a table query, makes `all_items` answer with that partition's items
(sorted as moto sorts). Index queries still read the whole table (moto keeps no index); the stack's order and
enrolment paths make none.

Proposed upstream as: "Table.query: iterate the queried partition only".

3. An SQS receive costs what it returns, not the queue's backlog times ten. moto's `receive_message` checks each
message it returns against the queue's retention period by asking `get_queue_attributes` for it, which computes
every attribute, the approximate counts included: a pass over every message in the queue, each visibility test a
datetime built twice (`moto.core.utils.unix_time`). With 1,500 orders queued, receiving 10 took about 300 ms and
the stack settled 3 orders a second. The patch reads the retention period from the queue, gives moto's SQS
module a clock of `time.time()` (the same value, without datetime arithmetic), and counts a queue's visible,
in-flight and delayed messages against one reading of that clock. SendMessage computes every attribute of the
queue, those counts included, to read one flag: the patch has it skip the counts.

Proposed upstream as: "SQS receive_message: read MessageRetentionPeriod without computing all attributes".

A race, found when `make bench-local` lost one order in 4,000 (answered 202, never settled, not in the DLQ): moto's
`Queue.delete_message` rebuilds the queue's message list and assigns it back without the lock `add_message` takes,
so a message sent between the two is dropped. The patch deletes under that lock, and receives under it too (a
receive moves messages to the dead-letter queue by removing them from that list; waiting releases the lock).
Proposed upstream as "SQS: hold _messages_lock in delete_message and receive_message".

4. moto's server lists its own package folder on disk (`list_of_moto_modules`, an `os.listdir` and an `isdir` per
service) to route every request, and lists each response class's methods (`inspect.getmembers`) to dispatch it:
together 17% of the stack's time per order. Neither can change while it runs; the patch reads each once. It also
parses each update expression once per distinct text (an order's update of its member is the same text every time;
parsing was 6% of the stack's time): moto's validator works on a deep copy of the parsed expression, never on it.
Likewise a condition expression is parsed once per distinct expression, names and values, not twice per action;
and one whose values are all scalars once per expression, names and value types, then evaluated with each
request's values (20% of moto's time while members enrolled).

5. TransactWriteItems honours its ClientRequestToken, as DynamoDB does: a request repeating a token that completed
within the last 10 minutes succeeds without being applied again, and one repeating it with other items is refused
(IdempotentParameterMismatchException). botocore fills the token once per call and sends it again on each retry,
so on AWS a transaction whose answer timed out (our read timeout is 2 s) and was retried reports success. moto
ignored the token: the retry would run again and fail its own conditions on what the first attempt wrote (an
enrolment would answer 200 "replay" instead of 201). Only completed transactions are remembered: a retried
refusal is evaluated again, as it would be anyway.

Proposed upstream as: "DynamoDB: honour TransactWriteItems' ClientRequestToken".

6. An item is sized once, and a DynamoDB data request is read as the JSON it is. moto's `Item.__init__` sets each
attribute through a dict that sums the sizes of every attribute already set before adding one (quadratic in the
item's attributes: 10% of moto's time per order); the patch sizes the item once, with the same limit and error.
moto reads each request through its model-driven parser, walking every member against the API's shapes to turn
JSON into what it already is, except binary attributes (base64 on the wire): 11% of moto's time per order. For the
data-plane actions, the patch reads the body with `json.loads` and decodes `B` and `BS` values, which is all that
walk changes in a request botocore sent (it sends no nulls and no members outside the shapes).

Proposed upstream as: "DynamoDB: size an item once on creation" and "DynamoDB: skip model-driven parsing of
data-plane requests".

7. An update expression's tree is copied as a tree. moto's validator deep-copies the parsed update expression
before resolving it (so the cached parse of patch 4 stays clean) with `copy.deepcopy`, which goes through each
node's `__reduce_ex__`: 10% of moto's time per order. The patch copies the tree's nodes and lists directly and
hands anything else to `deepcopy` (same memo, so parent links point into the copy as before).

Proposed upstream as: "DynamoDB validator: copy the expression tree without copy.deepcopy's generic protocol".

8. An update expression is validated in ten passes over its tree, each of which rebuilt its processing map twice
at every node; the patch builds it once per pass (see `_traverse_with_one_map`). And a condition's template
(patch 4) is keyed by the placeholders the condition itself names: an update's condition shares the request's
values with the update expression, a timestamp among them, so it missed the cache and was parsed every time.

Proposed upstream as: "DynamoDB parsing: build a traverser's processing map once per traversal".
"""

import base64
import copy
import functools
import hashlib
import json
import re
import threading
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
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
        # each table's stream length before: a refused transaction's records are taken off again
        streamed: dict[int, tuple[Table, int]] = {
            id(s[0]): (s[0], len(s[0].stream_shard.items)) for s in saved if s and s[0].stream_shard is not None
        }
        try:
            original(self, transact_items)
        except Exception:
            saved_items = [s for s in saved if s is not None]
            for table, hash_value, range_value, item in reversed(saved_items):
                _restore(table, hash_value, range_value, item)
            for table, length in streamed.values():
                _unstream(table, length, {(h, r) for t, h, r, _ in saved_items if t is table})
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _patch_stream_record()
    _patch_table_query()
    _patch_sqs()
    _read_once()
    _patch_request_tokens()
    _patch_item_sizing_and_parsing()
    _copy_update_trees_directly()
    _traverse_with_one_map()


def _unstream(table: Table, length: int, keys: set[tuple[DynamoType, DynamoType | None]]) -> None:
    """Take a refused transaction's records off the table's stream: those after `length` of the items it
    touched (a concurrent request's records, which the in-process mock's missing lock lets in, stay)."""
    shard = table.stream_shard
    if shard is None:
        return
    hash_attr, range_attr = table.hash_key_attr, table.range_key_attr

    def mine(record: Any) -> bool:
        key = record.record["dynamodb"]["Keys"]
        hash_value = DynamoType(key[hash_attr])
        range_value = DynamoType(key[range_attr]) if range_attr else None
        return (hash_value, range_value) in keys

    shard.items[length:] = [record for record in shard.items[length:] if not mine(record)]


def _patch_stream_record() -> None:
    """Streams cost what they deliver. moto sizes each stream record by dumping it to JSON (its `SizeBytes`, which
    nothing of ours reads) on every write to a table with a stream; `moto.dynamodb.models.table` uses that dump for
    nothing else: the size is left at a placeholder of 1. GetRecords answers with the records as they are kept."""
    from moto.dynamodb.models import table as table_models
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    setattr(table_models, "dynamo_json_dump", lambda _: "1")  # noqa: B010

    def get_records(self: DynamoDBStreamsHandler) -> str:
        # The records are wire JSON already (moto builds them from items' to_json); its model-driven serializer
        # walked every attribute of every image against the API's shapes: 28% of the local stack's time per order.
        limit = self._get_param("Limit")
        iterator = self._get_param("ShardIterator")
        result = self.backend.get_records(iterator, 1000 if limit is None else limit)
        if trim_on_read:  # the stack's moto process: what its one reader has gone past is dropped
            read = self.backend.shard_iterators.pop(iterator)
            _drop_before(read.stream_shard, read.sequence_number)
        return json.dumps(result, default=_wire)

    DynamoDBStreamsHandler.get_records = get_records  # type: ignore[method-assign,assignment]

    # Reads answer with items the same way: moto holds them as wire JSON once `DynamoResult` has turned its types
    # into dicts, and its serializer's walk over every attribute was 10% of the stack's time per order (the
    # aggregator's BatchGetItem of the members' RFM items).
    from moto.dynamodb.responses import DynamoHandler

    serialized = DynamoHandler.serialized

    def serialized_reads(self: DynamoHandler, action_result: Any) -> Any:
        if not isinstance(action_result.result, dict) or self._get_action() not in WIRE_JSON_READS:
            return serialized(self, action_result)
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
        return 200, headers, json.dumps(action_result.result, default=_wire)

    DynamoHandler.serialized = serialized_reads  # type: ignore[method-assign,assignment]


# Set in the local stack's own moto process (infra/local/moto_server.py `main`), where each stream has one reader,
# the stack's poller, which asks for records from where its delivery stands: a GetRecords drops the records before
# the iterator it reads from, and the iterator (moto kept every iterator it made, and every record, while it ran;
# AWS keeps records 24 hours and iterators 15 minutes).
trim_on_read = False

WIRE_JSON_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})


def _wire(value: Any) -> Any:
    """What the JSON protocol sends for the values moto keeps that JSON lacks: timestamps (a record's
    ApproximateCreationDateTime) in epoch seconds, binary attributes in base64."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _stream_shard(table_name: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends["123456789012"]["us-east-1"].get_table(table_name).stream_shard  # moto's default account


def stream_records(table_name: str, starts: dict[str, str], limit: int) -> tuple[str, list[dict[str, Any]]]:
    """(the shard's id, up to `limit` of its records from the sequence number `starts` gives for it, or from its
    oldest), as GetRecords sends them (a copy: binary in base64, the creation time in epoch seconds). In-process moto
    only: the stream read as Lambda's event source mapping reads it inside AWS, without an answer parsed through the
    API's shapes record by record (15% of the local stack's time while members enrolled)."""
    shard = _stream_shard(table_name)
    start = starts.get(shard.id)
    offset = max(int(start) - shard.starting_sequence_number, 0) if start else 0
    records = [record.record for record in shard.items[offset : offset + limit]]
    return shard.id, json.loads(json.dumps(records, default=_wire))


def trim_stream(table_name: str, through: int) -> None:
    """Drop a table's stream records up to sequence number `through` once applied (a stream keeps records 24
    hours; moto kept every record for as long as it ran). In-process moto only; sequence numbers do not change."""
    shard = _stream_shard(table_name)
    if shard is not None:
        _drop_before(shard, through + 1)


def _drop_before(shard: Any, sequence_number: int) -> None:
    drop = min(max(sequence_number - shard.starting_sequence_number, 0), len(shard.items))
    if drop:
        del shard.items[:drop]
        shard.starting_sequence_number += drop


_querying = threading.local()  # the partition a table query in this thread reads, while it runs


def _patch_table_query() -> None:
    query: Callable[..., Any] = Table.query
    all_items: Callable[[Table], list[Any]] = Table.all_items

    def partition_query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return query(self, hash_key, *args, **kwargs)
        _querying.partition = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _querying.partition = None

    def partition_items(self: Table) -> list[Any]:
        table, hash_key = getattr(_querying, "partition", None) or (None, None)
        if table is not self:
            return all_items(self)
        return sorted(self.items.get(hash_key, {}).values(), key=lambda item: item.range_key)

    Table.query = partition_query  # type: ignore[method-assign]
    Table.all_items = partition_items  # type: ignore[method-assign]


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


def _patch_sqs() -> None:
    from moto.sqs import models as sqs_models

    unix_time: Callable[..., float] = getattr(sqs_models, "unix_time")  # noqa: B009

    def fast_unix_time(dt: Any = None) -> float:
        return unix_time(dt) if dt is not None else time.time()

    def fast_unix_time_millis(dt: Any = None) -> float:
        return fast_unix_time(dt) * 1000.0

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    def visible(queue: Any) -> list[Any]:
        now = time.time() * 1000.0
        return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]

    def not_visible(queue: Any) -> int:
        now = time.time() * 1000.0
        return sum(1 for m in queue._messages if not now > m.visible_at)

    def delayed(queue: Any) -> int:
        now = time.time() * 1000.0
        return sum(1 for m in queue._messages if now < m.delayed_until)

    uncounted = threading.local()  # set while SendMessage reads the queue's attributes

    def not_visible_or_skipped(queue: Any) -> int:
        return 0 if getattr(uncounted, "on", False) else not_visible(queue)

    def delayed_or_skipped(queue: Any) -> int:
        return 0 if getattr(uncounted, "on", False) else delayed(queue)

    def visible_count(queue: Any) -> int:
        return 0 if getattr(uncounted, "on", False) else len(visible(queue))

    send_message: Callable[..., Any] = sqs_models.SQSBackend.send_message

    def send_message_uncounted(self: Any, *args: Any, **kwargs: Any) -> Any:
        uncounted.on = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            uncounted.on = False

    delete_message: Callable[..., None] = sqs_models.Queue.delete_message

    def delete_message_locked(queue: Any, receipt_handle: str) -> None:
        with queue._messages_lock:  # the lock add_message holds: no message is appended to a list being replaced
            delete_message(queue, receipt_handle)

    receive_message: Callable[..., Any] = sqs_models.SQSBackend.receive_message

    def receive_message_locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with self.get_queue(queue_name)._messages_lock:
            return receive_message(self, queue_name, *args, **kwargs)

    sqs_models.SQSBackend.receive_message = receive_message_locked  # type: ignore[method-assign]
    sqs_models.Queue.delete_message = delete_message_locked  # type: ignore[method-assign,assignment]
    sqs_models.SQSBackend.send_message = send_message_uncounted  # type: ignore[method-assign]
    sqs_models.Queue.approximate_number_of_messages = property(visible_count)  # type: ignore[method-assign,assignment]
    sqs_models.Queue.messages = property(visible)  # type: ignore[method-assign,assignment]
    sqs_models.Queue.approximate_number_of_messages_not_visible = property(not_visible_or_skipped)  # type: ignore[method-assign,assignment]
    sqs_models.Queue.approximate_number_of_messages_delayed = property(delayed_or_skipped)  # type: ignore[method-assign,assignment]
    sqs_models.unix_time = fast_unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = fast_unix_time_millis  # type: ignore[attr-defined]
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]


def _read_once() -> None:
    """Patch 4: what moto looks up or parses on every request, though it cannot change while it runs."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    from moto.core import responses
    from moto.dynamodb.parsing import expressions

    parser: Any = getattr(expressions, "UpdateExpressionParser")  # noqa: B009
    parser.make = staticmethod(functools.lru_cache(maxsize=1024)(parser.make))
    _parse_each_condition_once()
    setattr(responses, "method_names_from_class", functools.cache(getattr(responses, "method_names_from_class")))  # noqa: B009,B010


TOKEN_WINDOW_SECONDS = 600  # DynamoDB: "valid for 10 minutes after the first request that uses it is completed"
# (account, region, token) -> (digest of the items, completed at), oldest first
_tokens: dict[tuple[str, str, str], tuple[bytes, float]] = {}
_tokens_lock = threading.Lock()
token_clock = time.monotonic  # the tests move it past the window


class IdempotentParameterMismatchException(JsonRESTError):
    def __init__(self) -> None:
        super().__init__(
            "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
            "The request uses the same client token as a previous, but non-identical request.",
        )


def _patch_request_tokens() -> None:
    """Patch 5: a completed transaction's ClientRequestToken makes its retries succeed without effect."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.transact_write_items

    def transact_write_items(self: DynamoHandler) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        key = (self.current_account, self.region, str(token))
        items = hashlib.sha256(json.dumps(self.body["TransactItems"], sort_keys=True, default=_wire).encode()).digest()
        with _tokens_lock:
            now = token_clock()
            while _tokens and now - next(iter(_tokens.values()))[1] > TOKEN_WINDOW_SECONDS:
                del _tokens[next(iter(_tokens))]  # kept in the order they completed: the expired ones lead
            seen = _tokens.get(key)
        if seen is not None:
            if seen[0] != items:
                raise IdempotentParameterMismatchException()
            return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})
        answer = original(self)  # raises if refused: a refusal is not remembered
        with _tokens_lock:
            _tokens[key] = (items, token_clock())
        return answer

    DynamoHandler.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _parse_each_condition_once() -> None:
    """A transaction's condition is parsed when its action is checked and again when its put is applied (moto's
    `transact_write_items` and `Table.put_item` each call `get_filter_expression`): 8% of the local stack's time
    while members enrolled. The parsed condition is a tree of pure operators (`expr(item)` reads, never writes),
    so the same (expression, names, values) reuses it.

    Most conditions recur with other values (`attribute_not_exists(PK) OR member_id = :member`, once per
    enrolment: 20% of moto's time while members enrolled). A condition whose values are all scalars is parsed once
    per (expression, names, value types) and kept as a template: the tree's value operands, each found to come from
    exactly one placeholder, are set to a request's values while it is evaluated (under the template's lock). A
    condition whose values cannot be told apart that way (two placeholders holding one object) keeps the exact cache."""
    from moto.dynamodb import comparisons
    from moto.dynamodb import responses as dynamodb_responses
    from moto.dynamodb.models import table as table_models

    parse = comparisons.get_filter_expression
    parsed: dict[tuple[str, str, str], Any] = {}
    templates: dict[tuple[str, str, tuple[tuple[str, str], ...]], _ConditionTemplate | None] = {}

    def get_filter_expression(expr: str | None, names: Any, values: Any) -> Any:
        if not expr:
            return parse(expr, names, values)
        # An update's condition shares its request's values with the update expression (a timestamp among them):
        # only the condition's own placeholders decide its template, or it would be parsed on every request.
        used = _placeholders(expr)
        values = {name: value for name, value in (values or {}).items() if name in used}
        named = repr(sorted((names or {}).items()))
        types = _scalar_types(values or {})
        if types is not None:
            key = (expr, named, types)
            if key in templates:
                template = templates[key]
                if template is not None:
                    return _BoundCondition(template, values or {})
            else:
                if len(templates) > 1024:
                    templates.clear()
                op = parse(expr, names, values)
                made = templates[key] = _ConditionTemplate.of(op, values or {})
                return op if made is None else _BoundCondition(made, values or {})
        exact = (expr, named, repr(sorted((values or {}).items())))
        found = parsed.get(exact)
        if found is None:
            if len(parsed) > 1024:  # the same condition recurs within a request, rarely across requests
                parsed.clear()
            found = parsed[exact] = parse(expr, names, values)
        return found

    setattr(dynamodb_models, "get_filter_expression", get_filter_expression)  # noqa: B010
    setattr(table_models, "get_filter_expression", get_filter_expression)  # noqa: B010

    # UpdateItem (and each Update of a transaction) and TransactWriteItems' validation of every action parse the
    # condition with a parser of their own rather than through get_filter_expression: 12% of moto's time per order.
    # They get the same parsed (or templated) condition, and the attribute names it uses, found once per
    # expression and names (what they depend on). A new expression is still parsed with its request's
    # own values, so whatever moto refuses it still refuses.
    create_parser = comparisons.create_condition_expression_parser
    names_found: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def create_condition_expression_parser(expr: str | None, names: Any, values: Any) -> Any:
        if not expr:
            return create_parser(expr, names, values)
        op = get_filter_expression(expr, names, values)
        key = (expr, repr(sorted((names or {}).items())))
        found = names_found.get(key)
        if found is None:
            parser = create_parser(expr, names, values)
            parser.parse()
            if len(names_found) > 1024:
                names_found.clear()
            found = names_found[key] = (tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found))
        return _ParsedCondition(op, list(found[0]), list(found[1]))

    setattr(dynamodb_models, "create_condition_expression_parser", create_condition_expression_parser)  # noqa: B010
    setattr(dynamodb_responses, "create_condition_expression_parser", create_condition_expression_parser)  # noqa: B010


SCALAR_TYPES = frozenset({"S", "N", "B", "BOOL"})


@functools.lru_cache(maxsize=1024)
def _placeholders(expression: str) -> frozenset[str]:
    """The value placeholders (`:name`) an expression names."""
    return frozenset(re.findall(r":[A-Za-z0-9_]+", expression))


def _scalar_types(values: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """Each placeholder's type, if every value is a scalar attribute value."""
    types = []
    for name, value in values.items():
        if not isinstance(value, dict) or len(value) != 1:
            return None
        (kind,) = value
        if kind not in SCALAR_TYPES:
            return None
        types.append((name, kind))
    return tuple(sorted(types))


class _ParsedCondition:
    """What moto's callers read of a condition parser: `parse()`, and the attribute names and value placeholders
    the condition uses (for moto's check that every name and value given is used)."""

    def __init__(self, op: Any, names_found: list[str], values_found: list[str]) -> None:
        self.op = op
        self.expr_attr_names_found = names_found
        self.expr_attr_values_found = values_found

    def parse(self) -> Any:
        return self.op


class _ConditionTemplate:
    def __init__(self, op: Any, bindings: list[tuple[Any, str]]) -> None:
        self.op = op
        self.bindings = bindings  # (a value operand of the tree, the placeholder it holds)
        self.lock = threading.Lock()

    @classmethod
    def of(cls, op: Any, values: dict[str, Any]) -> "_ConditionTemplate | None":
        """The template of a condition parsed with `values`, or None if its operands cannot each be traced to one
        placeholder (and every placeholder to an operand)."""
        from moto.dynamodb.comparisons import AttributeValue

        operands: list[Any] = []
        seen: set[int] = set()

        def walk(node: Any) -> None:
            if id(node) in seen:
                return
            seen.add(id(node))
            if isinstance(node, AttributeValue):
                operands.append(node)
            elif isinstance(node, list | tuple):
                for inner in node:
                    walk(inner)
            elif type(node).__module__ == "moto.dynamodb.comparisons" and hasattr(node, "__dict__"):
                for inner in vars(node).values():
                    walk(inner)

        walk(op)
        bindings = []
        for operand in operands:
            sources = [name for name, value in values.items() if value.get(operand.type) is operand.value]
            if len(sources) != 1:
                return None  # a literal, or two placeholders holding one object
            bindings.append((operand, sources[0]))
        if {name for _, name in bindings} != set(values):
            return None
        return cls(op, bindings)


class _BoundCondition:
    """A condition template with one request's values, evaluated as moto evaluates a parsed condition."""

    def __init__(self, template: _ConditionTemplate, values: dict[str, Any]) -> None:
        self.template = template
        self.values = values

    def expr(self, item: Any) -> Any:
        with self.template.lock:
            for operand, name in self.template.bindings:
                ((operand.type, operand.value),) = self.values[name].items()
            return self.template.op.expr(item)


# The actions whose requests hold no timestamps: their JSON is what moto's parser makes of it, binary aside.
JSON_REQUESTS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


def _binary_decoded(value: Any) -> Any:
    """A request's JSON with each attribute value of type B or BS (one-key objects) decoded from base64."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((name, inner),) = value.items()
            if name == "B" and isinstance(inner, str):
                return {"B": base64.b64decode(inner)}
            if name == "BS" and isinstance(inner, list) and all(isinstance(v, str) for v in inner):
                return {"BS": [base64.b64decode(v) for v in inner]}
        return {key: _binary_decoded(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_binary_decoded(inner) for inner in value]
    return value


def _patch_item_sizing_and_parsing() -> None:
    """Patch 6: an item sized once; a data-plane request read as JSON."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.utilities import bytesize
    from moto.dynamodb.responses import DynamoHandler

    def item_init(self: Any, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        # moto's limit and sum (key sizes, then values), checked once the item is whole rather than per attribute
        if sum(bytesize(key) + value.size() for key, value in values.items()) > 405000:
            raise ItemSizeTooLarge
        self.attrs = dynamo_type.LimitedSizeDict()
        dict.update(self.attrs, values)

    dynamo_type.Item.__init__ = item_init  # type: ignore[method-assign]

    parse_parameters = DynamoHandler.parse_parameters

    def parse_json(self: DynamoHandler, request: Any) -> None:
        if self._get_action() not in JSON_REQUESTS or not isinstance(self.body, str):
            parse_parameters(self, request)
            return
        self.params = _binary_decoded(json.loads(self.body or "{}"))

    DynamoHandler.parse_parameters = parse_json  # type: ignore[method-assign,assignment]


def _copy_update_trees_directly() -> None:
    """Patch 7: the validator's copy of an update expression's tree, node by node."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    immutable = (str, int, float, bool, bytes, type(None))

    def copy_tree(value: Any, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        if isinstance(value, immutable):
            return value
        found = memo.get(id(value))
        if found is not None:
            return found
        if isinstance(value, list):
            copied: list[Any] = []
            memo[id(value)] = copied
            copied.extend(copy_tree(inner, memo) for inner in value)
            return copied
        if isinstance(value, Node):
            node = object.__new__(type(value))
            memo[id(value)] = node
            node.__dict__.update({name: copy_tree(inner, memo) for name, inner in value.__dict__.items()})
            return node
        return copy.deepcopy(value, memo)

    setattr(validators, "deepcopy", copy_tree)  # noqa: B010


def _traverse_with_one_map() -> None:
    """Patch 8: each of the validator's ten passes over an update expression's tree reads its processing map once.

    moto's `DepthFirstTraverser.traverse_node_recursively` calls `nodes_to_be_processed()` at every node, which
    builds the traverser's `_processing_map()` (a new dict of bound methods) and a tuple of its keys, and `process`
    builds the map again: with ten traversers per update, a third of moto's time per order went to walking the
    member's update (`make bench-local`'s moto ceiling, profiled). The maps depend on the traverser, never on the
    node, so the patch builds the map once per traversal and walks the tree as moto does: children first, each
    node given to the first processor whose class it is an instance of, the result put in the parent's place."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    plain_pre = DepthFirstTraverser.pre_processing_of_child

    def traverse(self: Any, root: Any) -> Any:
        processing = list(self._processing_map().items())
        pre = None if type(self).pre_processing_of_child is plain_pre else self.pre_processing_of_child
        # Per class of node met: whether it is a node, and its processor (the first whose class it is an instance
        # of), found once: isinstance against moto's abstract node classes was a tenth of moto's time per order.
        kinds: dict[type, tuple[bool, Any]] = {}

        def kind_of(cls: type) -> tuple[bool, Any]:
            found = kinds.get(cls)
            if found is None:
                processor = next((p for kind, p in processing if issubclass(cls, kind)), None)
                found = kinds[cls] = (issubclass(cls, Node), processor)
            return found

        def walk(node: Any, child_id: int) -> Any:
            is_node, processor = kind_of(type(node))
            if not is_node:
                return node
            parent = node.parent
            if node.children is not None:
                for i, child in enumerate(node.children):
                    if pre is not None:
                        pre(node, i)
                    walk(child, i)
            if processor is not None:
                node = processor(node)
                node.parent = parent
                if parent:
                    parent.children[child_id] = node
            return node

        return walk(root, -1)

    DepthFirstTraverser.traverse = traverse
