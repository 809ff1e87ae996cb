"""`loyalty import` at size: a messy CSV (duplicates, bad phones, mixed encodings) imported into moto in process,
rows per second measured, DynamoDB requests and write units per member counted, and what a million rows would
take and cost on AWS worked out from them.

    make bench-import        (python -m bench.import_csv [rows], default 10,000; about 5 minutes)

The importer is the real one (reading, cleaning, de-duplicating, its resume file); its batches go to the import
capability directly instead of over HTTP, so the figure is the importer's and the API's work, on one core.
"""

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto()

from moto import mock_aws

from bench.cost import PRICE
from infra.local.resources import create_stack
from loyalty.cli.importer import import_file
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.store import audit as audit_store
from loyalty.store.audit import AuditScope
from loyalty.store.dynamo import Dynamo
from tests.integration.test_import import TIERS, messy_csv

# On AWS one batch of 100 rows is one API call: 100 transactions of ~10 ms each (DynamoDB's latency for a
# transaction of a few items), about 1 s. Ten batches at once (the importer's --workers) keep ten Lambdas busy.
AWS_SECONDS_PER_BATCH = 1.0
AWS_WORKERS = 10
MILLION = 1_000_000


def main(rows: int) -> None:
    with mock_aws():
        stack = create_stack(prefix="bench-")
        services = Services(Dynamo(stack.tables["LoyaltyTable"]))
        shop_id = services.shops.create_shop("Imported")["shop_id"]
        services.shops.set_program(
            shop_id, Program.model_validate({"tiers": TIERS, "expiry": {"import": {"policy": "days", "days": 365}}})
        )
        written = {"units": 0}

        def count_units(params: dict[str, Any], **_: Any) -> None:
            # Each item a transaction writes costs 2 write units per KB (ours are under 1 KB).
            written["units"] += 2 * len(params.get("TransactItems", []))

        services.db.client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", count_units)

        def send(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # As the API answers it: each row's transaction carries its audit entry.
            scope = AuditScope(
                actor={"kind": "key", "key_id": "key_bench", "name": "owner", "role": "owner"}, method="POST",
                route="/v1/shops/{shop_id}/members:batch", target={}, request_id=uuid.uuid4().hex,
                at=services.clock(),
            )  # fmt: skip
            with audit_store.recording(scope):
                return services.imports.import_rows(shop_id, batch)

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "members.csv"
            expected = messy_csv(path, rows)
            started = time.perf_counter()
            report = import_file(path, send, region="CN", workers=1, progress=sys.stderr)
            seconds = time.perf_counter() - started
        created = report["created"]
        assert created == expected["created"], (report, expected)
        requests = dict(services.db.requests)
        transactions = requests.get("TransactWriteItems", 0)
        units_per_member = written["units"] / created
        batches = MILLION / 100
        aws_minutes = batches / AWS_WORKERS * AWS_SECONDS_PER_BATCH / 60
        print(f"rows                      {rows:,} ({created:,} members, {report['rejected']:,} rejected)")
        print(f"locally (moto, one core)  {rows / seconds:,.0f} rows/s, {seconds:,.1f} s")
        print(f"DynamoDB per member       {transactions / created:.2f} TransactWriteItems, "
              f"{units_per_member:.1f} write units")  # fmt: skip
        print(f"1,000,000 rows on AWS     ~{aws_minutes:,.0f} min with {AWS_WORKERS} batches at once "
              f"({AWS_SECONDS_PER_BATCH:.0f} s a batch of 100), "
              f"${MILLION * units_per_member / 1e6 * PRICE['write_unit']:,.2f} of DynamoDB writes "
              f"+ {batches:,.0f} API calls")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
