"""The command line as an operator uses it: keys, stores, migrations and the demo."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from huiyuan.api.app import create_app
from huiyuan.cli.main import app
from huiyuan.domain.business_time import month_starts

from .bodies import completed, item, paid
from .ledger import apply, document, iso, send

runner = CliRunner()


@pytest.fixture
def env(db_url, monkeypatch):
    monkeypatch.setenv("HUIYUAN_DATABASE_URL", db_url)
    return db_url


def test_keys_create_prints_a_working_key_alone_on_its_last_line(env, svc):
    # when an operator creates a key for the platform
    result = runner.invoke(app, ["keys", "create", "--owner", "platform", "--scopes", "read"])
    # then the last line of standard output is the key, and the API accepts it
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("hy_") and " " not in key
    with TestClient(create_app(svc)) as client:
        response = client.get("/v1/members/nobody", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


def test_keys_for_an_unknown_owner_are_refused(env):
    result = runner.invoke(app, ["keys", "create", "--owner", "no-such-store"])
    assert result.exit_code == 1
    assert "owner_not_found" in result.output


def test_a_revoked_key_stops_working(env, svc):
    created = runner.invoke(app, ["keys", "create", "--owner", "platform"])
    key = created.stdout.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    # when the key is revoked
    result = runner.invoke(app, ["keys", "revoke", prefix])
    assert result.exit_code == 0, result.output
    # then a fresh API process refuses it
    with TestClient(create_app(svc)) as client:
        response = client.get("/v1/members/x", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_stores_add_gives_the_store_a_program(env):
    result = runner.invoke(app, ["stores", "add", "store-x", "--name", "小店"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["stores", "list"])
    assert "store-x" in listing.stdout and "小店" in listing.stdout
    again = runner.invoke(app, ["stores", "add", "store-x", "--name", "小店"])
    assert again.exit_code == 1 and "owner_exists" in again.output


def test_help_is_everywhere():
    for command in ([], ["keys"], ["keys", "create"], ["stores"], ["events"], ["demo"], ["serve"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_demo_builds_members_and_orders_through_the_event_path(tmp_path):
    # given a small demo
    database = tmp_path / "demo.db"
    result = runner.invoke(
        app, ["demo", "--members", "25", "--database", str(database), "--no-serve"]
    )
    # then it reports members and orders, refused nothing, and prints a key last
    assert result.exit_code == 0, result.output
    assert "25 members" in result.output
    assert "refused" not in result.output
    assert "Members shop in the points mall:" in result.output
    assert result.stdout.strip().splitlines()[-1].startswith("hy_")
    # and a second run reuses the database instead of inventing it again
    again = runner.invoke(
        app, ["demo", "--members", "25", "--database", str(database), "--no-serve"]
    )
    assert again.exit_code == 0, again.output
    assert "Using the demo database" in again.output


def test_ledger_flow_charts_the_months_and_what_members_hold(env, svc, clock):
    # given 299 points earned and released in the platform's program
    apply(svc, document())
    send(svc, paid("pay-1", "o1", "u1", amount=29900, items=[item("coat", 29900)]))
    send(svc, completed("done-1", "o1", "u1", occurred_at=iso(clock())))
    # when an operator asks for the last two business months (the command's clock is real)
    result = runner.invoke(app, ["ledger", "flow", "--months", "2"])
    # then each month is a row, and the last ends with what members hold now
    assert result.exit_code == 0, result.output
    months = month_starts(datetime.now(UTC), ZoneInfo("Asia/Shanghai"), 2)[:-1]
    for start in months:
        assert start.strftime("%Y-%m") in result.output
    assert "299 (¥2.99)" in result.output
    # and an unknown program is refused
    unknown = runner.invoke(app, ["ledger", "flow", "--program", "nope"])
    assert unknown.exit_code == 1
    assert "program_not_enrolled" in unknown.output
