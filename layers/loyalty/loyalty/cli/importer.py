"""`loyalty import members.csv --shop … --key …`: a shop's existing members, from a CSV of any size.

Rows are read as a stream (UTF-8 or GB18030, line by line, so a file mixing both still reads), cleaned (phones to
E.164 in the program's region, e-mails lower-cased, birthdays in ISO form), de-duplicated within the file (the
first row with a member id, phone or e-mail wins) and sent in batches of 100, several at once, to
POST /members:batch, which de-duplicates against existing members and enrols each row with its opening points and
tier in one transaction. Rows that cannot be imported go to a rejects file with their reason.

Where it got to is kept beside the file (`<file>.import.sqlite`: rows confirmed, contacts seen), so running it
again goes on from there; a batch in flight when it stopped is sent again, and the API answers its rows that were
imported `exists` (idempotent per row): nothing is imported twice.
"""

import argparse
import csv
import hashlib
import itertools
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from loyalty.cli.http import base_url, call
from loyalty.domain.members import e164, normalise_email

BATCH = 100
# Column names a shop's export may use, for each field we take.
COLUMNS = {
    "member_id": ("member_id", "id", "member", "customer_id", "会员id", "会员编号", "用户id"),
    "phone": ("phone", "mobile", "tel", "手机", "手机号", "电话"),
    "email": ("email", "e-mail", "mail", "邮箱"),
    "birthday": ("birthday", "birth_date", "dob", "生日"),
    "points": ("points", "balance", "积分", "积分余额"),
    "points_expire_at": ("points_expire_at", "expires_at", "积分过期时间"),
    "tier": ("tier", "level", "等级", "会员等级"),
}

Send = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def add_command(commands: Any) -> None:
    command = commands.add_parser("import", help="import members from a CSV file (resumable)")
    command.add_argument("file", type=Path)
    command.add_argument("--shop", required=True, help="the shop's id (shp_…)")
    command.add_argument("--key", required=True, help="an owner key of the shop")
    command.add_argument("--url", help="the API (default $LOYALTY_URL or http://127.0.0.1:3000)")
    command.add_argument("--region", help="region of phone numbers without + (default: the program's)")
    command.add_argument("--workers", type=int, default=4, help="batches sent at once (default 4)")
    command.add_argument("--rejects", type=Path, help="default: <file>.rejects.csv")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    url = base_url(args.url)
    auth = {"Authorization": f"Bearer {args.key}"}
    region = args.region
    if region is None:
        status, program = call("GET", f"{url}/v1/shops/{args.shop}/program", headers=auth)
        if status != 200:
            print(f"cannot read the shop's program: {status} {program}", file=sys.stderr)
            return 1
        region = program.get("phone_region", "CN")

    def send(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps({"members": rows}).encode()
        for attempt in range(6):
            status, answer = call("POST", f"{url}/v1/shops/{args.shop}/members:batch", body=body, headers=auth)
            if status == 200:
                return list(answer["results"])
            if status not in (429, 500, 502, 503, 504):
                raise SystemExit(f"the API refused a batch: {status} {answer}")
            time.sleep(0.5 * 2**attempt)
        raise SystemExit(f"the API kept failing: {status} {answer}")

    report = import_file(args.file, send, region=region, workers=args.workers, rejects=args.rejects)
    print(json.dumps(report))
    return 0


# ---------------------------------------------------------------- reading and cleaning


def lines(path: Path) -> Iterator[str]:
    """The file's lines as text: each line UTF-8 if it is, else GB18030 (Excel's exports in China)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle):
            if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield raw.decode("gb18030", errors="replace")


def header_map(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    names = [name.strip().lower() for name in header]
    for wanted, aliases in COLUMNS.items():
        for index, name in enumerate(names):
            if name in aliases and wanted not in found:
                found[wanted] = index
    if "member_id" not in found:
        raise SystemExit(f"no member id column (one of: {', '.join(COLUMNS['member_id'])})")
    return found


def clean(values: dict[str, str], region: str) -> dict[str, Any]:
    """A row as the API takes it; ValueError(reason) for one that cannot be imported."""
    row: dict[str, Any] = {}
    member_id = values.get("member_id", "").strip()
    if not member_id or len(member_id) > 128 or "#" in member_id or any(c.isspace() for c in member_id):
        raise ValueError("member_id: missing, or has spaces or '#'")
    row["member_id"] = member_id
    if phone := values.get("phone", "").strip():
        try:
            row["phone"] = e164(phone, region)
        except ValueError as exc:
            raise ValueError(f"phone: {exc}") from exc
    if email := values.get("email", "").strip():
        try:
            row["email"] = normalise_email(email)
        except ValueError as exc:
            raise ValueError(f"email: {exc}") from exc
    if birthday := values.get("birthday", "").strip():
        row["birthday"] = _date(birthday).isoformat()
    if points := values.get("points", "").strip().replace(",", ""):
        if not points.isdigit():
            raise ValueError(f"points: not a whole number of points: {points!r}")
        row["points"] = int(points)
    if expires := values.get("points_expire_at", "").strip():
        row["points_expire_at"] = _instant(expires)
    if tier := values.get("tier", "").strip():
        row["tier"] = tier
    return row


def identities(row: dict[str, Any]) -> list[tuple[str, str]]:
    """What makes two rows one member: the id, the phone, the e-mail."""
    return [("id", row["member_id"])] + [(kind, row[kind]) for kind in ("phone", "email") if kind in row]


def _date(text: str) -> date:
    for form in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"):
        try:
            return datetime.strptime(text, form).date()  # noqa: DTZ007 (a calendar date, no time)
        except ValueError:
            continue
    raise ValueError(f"birthday: not a date: {text!r}")


def _instant(text: str) -> str:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"points_expire_at: not a date and time: {text!r}") from exc
    if when.tzinfo is None:
        raise ValueError("points_expire_at: say its time zone (e.g. 2027-12-31T23:59:59+08:00)")
    return when.isoformat()


# ---------------------------------------------------------------- where it got to


class State:
    """The import's progress, in SQLite beside the file: which rows are settled, and the member ids, phones and
    e-mails seen (as digests), so a re-run skips what is done and finds the same duplicates."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.lock = threading.Lock()
        self.db.execute("CREATE TABLE IF NOT EXISTS settled (row INTEGER PRIMARY KEY)")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (digest BLOB PRIMARY KEY, row INTEGER)")
        self.db.commit()

    def settled(self, first: int, last: int) -> set[int]:
        """The rows from `first` to `last` that are settled."""
        with self.lock:
            found = self.db.execute("SELECT row FROM settled WHERE row BETWEEN ? AND ?", (first, last)).fetchall()
        return {row for (row,) in found}

    def claim(self, rows: list[tuple[int, list[str]]]) -> dict[int, int]:
        """Record each row's identifiers as seen, in order; for a row one of whose identifiers an earlier row had
        (in this file), that row. A chunk of rows at a time: few calls into SQLite, each of which gives up the GIL."""
        digests = {key: hashlib.blake2b(key.encode(), digest_size=12).digest() for _, keys in rows for key in keys}
        with self.lock:
            known: dict[bytes, int] = {}
            values = list(set(digests.values()))
            for start in range(0, len(values), 500):
                part = values[start : start + 500]
                marks = ",".join("?" * len(part))
                query = f"SELECT digest, row FROM seen WHERE digest IN ({marks})"  # noqa: S608 (placeholders only)
                known.update({bytes(digest): int(row) for digest, row in self.db.execute(query, part)})
            duplicates: dict[int, int] = {}
            new: list[tuple[bytes, int]] = []
            for row, keys in rows:
                mine = [digests[key] for key in keys]
                first = next((known[d] for d in mine if d in known and known[d] != row), None)
                if first is not None:
                    duplicates[row] = first
                    continue
                for digest in mine:
                    if digest not in known:
                        known[digest] = row
                        new.append((digest, row))
            self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", new)
        return duplicates

    def settle(self, rows: list[int]) -> None:
        """Rows done with (and the identifiers claimed so far: a row claimed but never settled claims the same
        again when it is read again)."""
        with self.lock:
            self.db.executemany("INSERT OR IGNORE INTO settled VALUES (?)", [(row,) for row in rows])
            self.db.commit()

    def close(self) -> None:
        with self.lock:
            self.db.close()


# ---------------------------------------------------------------- the import


@dataclass
class Report:
    rows: int = 0
    created: int = 0
    existed: int = 0
    rejected: int = 0
    skipped: int = 0  # settled by an earlier run
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


class Rejects:
    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self.handle: TextIO = path.open("a", encoding="utf-8", newline="")
        self.writer = csv.writer(self.handle)
        self.lock = threading.Lock()
        if new:
            self.writer.writerow(["row", "member_id", "reason"])

    def add(self, row: int, member_id: str, reason: str) -> None:
        with self.lock:
            self.writer.writerow([row, member_id, reason])


def import_file(
    path: Path,
    send: Send,
    *,
    region: str,
    workers: int = 4,
    rejects: Path | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Import the file through `send` (a batch of rows -> one result per row); returns the counts."""
    total = sum(1 for _ in lines(path)) - 1
    state = State(path.with_name(path.name + ".import.sqlite"))
    refused = Rejects(rejects or path.with_name(path.name + ".rejects.csv"))
    report = Report()
    started = time.monotonic()
    lock = threading.Lock()

    def reject(row: int, member_id: str, reason: str) -> None:
        refused.add(row, member_id, reason)
        kind = reason.split(":", 1)[0]
        with lock:
            report.rejected += 1
            report.reasons[kind] = report.reasons.get(kind, 0) + 1

    def settle(batch: list[tuple[int, dict[str, Any]]], results: list[dict[str, Any]]) -> None:
        for (row, sent), result in zip(batch, results, strict=True):
            if result["status"] == "created":
                with lock:
                    report.created += 1
            elif result["status"] == "exists":
                with lock:
                    report.existed += 1
            else:
                error = result.get("error") or {}
                reject(row, sent["member_id"], f"{result['status']}: {error.get('field')}: {error.get('message')}")
        state.settle([row for row, _ in batch])

    try:
        reader = csv.reader(lines(path))
        columns = header_map(next(reader))
        pending: set[Future[None]] = set()
        batch: list[tuple[int, dict[str, Any]]] = []

        def submit(pool: ThreadPoolExecutor, batch: list[tuple[int, dict[str, Any]]]) -> None:
            while len(pending) >= workers * 2:  # a bounded queue: memory stays flat whatever the file's size
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.discard(future)
                    future.result()
            pending.add(pool.submit(lambda: settle(batch, send([row for _, row in batch]))))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            numbered = enumerate(reader, start=2)  # row 1 is the header, as a spreadsheet numbers them
            while chunk := list(itertools.islice(numbered, BATCH)):
                report.rows += len(chunk)
                if progress is not None:
                    _show(progress, report, total, started)
                done = state.settled(chunk[0][0], chunk[-1][0])
                report.skipped += len(done)
                candidates: list[tuple[int, dict[str, Any]]] = []
                refused_here: list[int] = []
                for row, record in chunk:
                    if row in done:
                        continue
                    values = {name: record[i] if i < len(record) else "" for name, i in columns.items()}
                    try:
                        candidates.append((row, clean(values, region)))
                    except ValueError as exc:
                        reject(row, values.get("member_id", ""), f"invalid: {exc}")
                        refused_here.append(row)
                identifiers = [(row, [f"{k}:{v}" for k, v in identities(cleaned)]) for row, cleaned in candidates]
                duplicates = state.claim(identifiers)
                for row, cleaned in candidates:
                    if row in duplicates:
                        reject(row, cleaned["member_id"], f"duplicate: of row {duplicates[row]} in this file")
                state.settle(refused_here + list(duplicates))  # before anything is sent: a rejected row once
                for row, cleaned in candidates:
                    if row not in duplicates:
                        batch.append((row, cleaned))
                    if len(batch) == BATCH:
                        submit(pool, batch)
                        batch = []
            if batch:
                submit(pool, batch)
            for future in pending:
                future.result()
    finally:
        state.close()
        refused.handle.close()
    report.seconds = round(time.monotonic() - started, 3)
    if progress is not None:
        _show(progress, report, total, started)
        progress.write("\n")
    return {**report.__dict__, "rows_per_second": round(report.rows / report.seconds) if report.seconds else None}


def _show(out: TextIO, report: Report, total: int, started: float) -> None:
    done = report.rows
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / max(time.monotonic() - started, 1e-9)
    out.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done:,}/{total:,} rows  {rate:,.0f} rows/s  "
              f"{report.rejected:,} rejected")  # fmt: skip
    out.flush()
