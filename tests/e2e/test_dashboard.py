"""The dashboard in a real headless browser: the local stack as `make run` starts it, a shop with a history, the
page opened from a login link in Chromium, its screenshot kept in the test output, and the numbers each chart was
drawn with (read back from Chart.js in the page) checked against the API.

Chromium is Debian's (`make test` installs it when it can: `apt-get install chromium`); without it this test is
skipped and says so.
"""

import html
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_local_stack import OPERATOR_KEY, call, paid_now, start_stack, stop, webhook

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"
# Chromium on a closed network: no background connections, no sandbox as root, a profile of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1700",
    "--virtual-time-budget=10000",
]

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (make test installs it as root)")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running, url = start_stack({}, tmp_path_factory.mktemp("stack") / "stack.log")
    yield url
    stop(running)


def browse(url: str, profile: Path, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (or, with `screenshot`, a PNG of it)."""
    assert BROWSER is not None
    what = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run(  # noqa: S603 - the machine's own Chromium, on a URL of ours
        [BROWSER, *FLAGS, f"--user-data-dir={profile}", *what, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_dashboard_draws_the_shops_figures(base: str, tmp_path: Path) -> None:
    status, shop = call(base, "POST", "/v1/shops", {"name": "Tea <House>"}, key=OPERATOR_KEY)
    assert status == 201
    key, shop_id = shop["api_key"], shop["shop_id"]
    program = {
        "currency": "CNY",
        "points_offset": {"points_per_unit": 100},
        "tiers": [{"name": "normal", "threshold": 0}, {"name": "gold", "threshold": 300}],
    }
    assert call(base, "PUT", f"/v1/shops/{shop_id}/program", program, key=key)[0] == 200
    for member, total in (("m1", "120.00"), ("m2", "400.00"), ("m3", "50.00")):
        assert call(base, "POST", f"/v1/shops/{shop_id}/members", {"member_id": member}, key=key)[0] == 201
        assert webhook(base, shop, paid_now(f"o-{member}", total, member), f"msg-{member}") == 202
    wait_for(base, key, shop_id, lambda s: s["orders"]["count"] == 3)
    redeemed = call(
        base,
        "POST",
        f"/v1/shops/{shop_id}/members/m2/redemptions",
        {"points": 30, "reason": "gift"},
        key=key,
        headers={"Idempotency-Key": "r1"},
    )
    assert redeemed[0] == 201, redeemed
    summary = wait_for(base, key, shop_id, lambda s: s["points"]["spent"] == 30 and s["orders"]["count"] == 3)

    status, link = call(base, "POST", f"/v1/shops/{shop_id}/dashboard/links", key=key)
    assert status == 201 and link["url"].startswith(f"/v1/shops/{shop_id}/dashboard?token=")
    page = base + link["url"] + "&days=7"
    dom = browse(page, tmp_path / "profile")
    assert 'data-ready="true"' in dom, dom[-3000:]
    assert 'src="../../assets/chart.umd.min.js"' in dom  # relative: on AWS the API's stage leads the path
    drawn = json.loads(html.unescape(re.search(r'<pre id="figures">(.*?)</pre>', dom, re.S)[1]))  # type: ignore[index]
    assert all(chart["rendered"] for chart in drawn.values())
    daily = call(
        base, "GET", f"/v1/shops/{shop_id}/reports/daily?from={days(drawn)[0]}&until={days(drawn)[-1]}", key=key
    )[1]["days"]
    flows = {s["label"]: s["data"] for s in drawn["points-flow"]["datasets"]}
    assert flows["issued"] == [d["points"]["issued"] for d in daily]
    assert flows["spent"] == [d["points"]["spent"] for d in daily] and sum(flows["spent"]) == 30
    outstanding = drawn["liability"]["datasets"][0]["data"]
    assert outstanding == [d["points"]["outstanding"] for d in daily]
    assert outstanding[-1] == summary["points"]["outstanding"] > 0
    tiers = dict(zip(drawn["tier-mix"]["labels"], drawn["tier-mix"]["datasets"][0]["data"], strict=True))
    assert tiers == summary["members"]["by_tier"] == {"gold": 1, "normal": 2}
    assert "Tea &lt;House&gt;" in dom  # the shop's name, escaped
    SCREENSHOTS.mkdir(exist_ok=True)
    shot = SCREENSHOTS / "dashboard.png"
    browse(page, tmp_path / "profile2", screenshot=shot)
    assert shot.stat().st_size > 20_000  # a page of charts, not a blank one
    print(f"dashboard screenshot: {shot}")


def test_a_link_opens_only_its_shops_dashboard_and_only_for_a_while(base: str) -> None:
    shops = [call(base, "POST", "/v1/shops", {"name": name}, key=OPERATOR_KEY)[1] for name in ("A", "B")]
    status, link = call(base, "POST", f"/v1/shops/{shops[0]['shop_id']}/dashboard/links", key=shops[0]["api_key"])
    assert status == 201
    token = link["url"].split("token=", 1)[1]
    other = call(base, "GET", f"/v1/shops/{shops[1]['shop_id']}/dashboard?token={token}")
    assert other[0] == 401
    as_member = call(base, "GET", "/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert as_member[0] == 401  # a dashboard link is no member token
    assert call(base, "GET", f"/v1/shops/{shops[0]['shop_id']}/dashboard?token=garbage")[0] == 401
    write = call(base, "POST", f"/v1/shops/{shops[0]['shop_id']}/members?token={token}", {"member_id": "x"})
    assert write[0] == 401  # only the page itself opens with a link


def days(drawn: dict[str, Any]) -> list[str]:
    return list(drawn["points-flow"]["labels"])


def wait_for(base: str, key: str, shop_id: str, ready: Any) -> dict[str, Any]:
    """The summary once the queue and the stream have caught up."""
    deadline = time.monotonic() + 60
    while True:
        status, summary = call(base, "GET", f"/v1/shops/{shop_id}/reports/summary", key=key)
        assert status == 200, summary
        if ready(summary) or time.monotonic() > deadline:
            assert ready(summary), summary
            return dict(summary)
        time.sleep(0.5)
