"""Questions over years: the table's weekly export to S3 (ExportTableFunction, DynamoDB's own export), and the
README's Athena queries (infra/athena/queries.sql) run unchanged on DuckDB over the same export files, against a
table declared as the template's Glue table declares `loyalty_items`. Their answers are checked against the API."""

import gzip
import re
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from infra.local import lambdas
from infra.local.resources import Stack, load_template
from infra.local.streams import StreamPoller
from tests.conftest import Api
from tests.helpers import drain, paid, send

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "infra" / "athena" / "queries.sql"


def queries() -> dict[str, str]:
    """Each named query of the file, as README shows them."""
    text = QUERIES.read_text()
    found = re.findall(r"-- name: (\w+)\n(.*?;)", text, re.S)
    return {name: "\n".join(line for line in body.splitlines() if not line.startswith("--")) for name, body in found}


def glue_struct() -> str:
    """The Glue table's `item` column type, as DuckDB spells it: a query that reads a field the Glue table does not
    declare fails here as it would on Athena. Athena's JSON SerDe matches keys whatever their case (Glue keeps
    names in lower case); DuckDB's reader does not, so the fields take the case the export writes (PK, S, N), and
    queries read them in any case, as on Athena."""
    table = load_template()["Resources"]["ItemsTable"]["Properties"]["TableInput"]
    (column,) = table["StorageDescriptor"]["Columns"]
    exported = {"pk": "PK", "sk": "SK", "s": "S", "n": "N"}
    duck = re.sub(r"(\w+):", lambda m: f'"{exported.get(m[1], m[1])}" ', column["Type"])
    return duck.replace("struct<", "STRUCT(").replace(">", ")").replace("string", "VARCHAR")


def bind(sql: str, **values: str) -> str:
    for name, value in values.items():
        sql = sql.replace(f":{name}", "'" + value.replace("'", "''") + "'")
    return sql


@pytest.fixture
def exported(api: Api, stack: Stack, shop: dict[str, str], tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    key, shop_id = shop["api_key"], shop["shop_id"]

    def call(method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer = api.call(method, f"/v1/shops/{shop_id}{path}", key=key, body=body, headers=headers)
        assert status < 300, answer
        return answer

    call("PUT", "/program", {"tiers": [{"name": "normal", "threshold": 0}, {"name": "gold", "threshold": 300}]})
    for n, total in enumerate(("120.00", "400.00", "50.00", "80.00")):
        call("POST", "/members", {"member_id": f"m{n}"})
        send(stack, shop_id, paid(f"o{n}", f"m{n}", total), f"d{n}")
    drain(stack)
    call("POST", "/members/m1/redemptions", {"points": 30, "reason": "gift"}, **{"Idempotency-Key": "r1"})
    StreamPoller(lambdas.functions()["AggregatesFunction"], stack.tables["LoyaltyTable"]).drain()
    started = lambdas.invoke(
        lambdas.functions()["ExportTableFunction"], lambdas.schedule_event("2026-12-06T18:00:00Z", rule="export")
    )
    assert started["status"] in ("IN_PROGRESS", "COMPLETED")
    again = lambdas.invoke(  # EventBridge retrying the same run starts no second export
        lambdas.functions()["ExportTableFunction"], lambdas.schedule_event("2026-12-06T18:00:00Z", rule="export")
    )
    assert again["export_arn"] == started["export_arn"]
    s3 = boto3.client("s3")
    bucket = stack.buckets["ExportBucket"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="exports/")["Contents"]]
    data = [k for k in keys if re.fullmatch(r"exports/AWSDynamoDB/[^/]+/data/[^/]+\.gz", k)]
    assert data, keys
    export_id = data[0].split("/")[2]
    for n, name in enumerate(data):  # the files as Athena would read them (gzip, a JSON object per line)
        body = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        assert gzip.decompress(body).startswith(b'{"Item"')
        (tmp_path / f"part{n}.json.gz").write_bytes(body)
    con = duckdb.connect()
    source = f"read_json('{tmp_path}/*.json.gz', format='newline_delimited', compression='gzip', columns={{'Item': '{glue_struct()}'}})"  # noqa: E501
    view = "CREATE VIEW loyalty_items AS SELECT Item AS item, '" + export_id + "' AS export FROM " + source  # noqa: S608
    con.execute(view)
    return con, export_id


def test_the_readme_queries_answer_what_the_api_does(
    exported: tuple[duckdb.DuckDBPyConnection, str], api: Api, shop: dict[str, str]
) -> None:
    con, export_id = exported
    named = queries()
    assert set(named) == {"points_by_month_and_reason", "top_spenders", "members_by_tier_and_segment"}
    readme = (ROOT / "README.md").read_text()
    for sql in named.values():  # the README shows them as they are run
        assert sql.strip().splitlines()[0] in readme
    shop_id = shop["shop_id"]
    summary = api.call("GET", f"/v1/shops/{shop_id}/reports/summary", key=shop["api_key"])[1]

    rows = con.execute(bind(named["points_by_month_and_reason"], export=export_id, shop=shop_id)).fetchall()
    by_reason = {reason: points for _, reason, points, _ in rows}
    assert by_reason["order.paid"] == summary["points"]["issued"] == 650
    assert -by_reason["redemption"] == summary["points"]["spent"] == 30
    assert sum(by_reason.values()) == summary["points"]["outstanding"]

    top = con.execute(bind(named["top_spenders"], export=export_id, shop=shop_id)).fetchall()
    assert [(member, spend, orders) for member, spend, orders, _ in top[:2]] == [("m1", 40000, 1), ("m0", 12000, 1)]

    mix = con.execute(bind(named["members_by_tier_and_segment"], export=export_id, shop=shop_id)).fetchall()
    tiers: dict[str, int] = {}
    for tier, _, members in mix:
        tiers[tier] = tiers.get(tier, 0) + members
    assert tiers == {"gold": 1, "base": 3}
    assert summary["members"]["by_tier"] == {"gold": 1, "normal": 3}


def test_a_query_reading_a_field_the_glue_table_lacks_fails_here_as_on_athena(
    exported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    con, export_id = exported
    with pytest.raises(duckdb.Error):
        con.execute("SELECT item.nickname.s FROM loyalty_items WHERE export = ?", [export_id]).fetchall()
