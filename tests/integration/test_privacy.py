"""Phone numbers and other personal data never reach the logs."""

from __future__ import annotations

import logging


def test_phone_numbers_are_not_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    # given a member registered with a phone
    api.post(
        "/v1/events",
        {
            "id": "reg-1",
            "type": "member.registered",
            "occurred_at": "2026-02-01T10:00:00+08:00",
            "member_id": "u-private",
            "data": {"phone": "13912345678", "name": "李娜", "email": "lina@example.com"},
        },
    )
    # when customer service looks them up by phone
    found = api.get("/v1/members", phone="139 1234 5678").json()
    assert [m["member_id"] for m in found["members"]] == ["u-private"]
    # then the server logged the request, but neither the phone, the name nor the email
    # (the test's own HTTP client, which logs full URLs, is the caller's side: left out)
    server_log = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("httpx")
    )
    assert "GET /v1/members 200" in server_log
    for secret in ("13912345678", "1234", "李娜", "lina@example.com"):
        assert secret not in server_log
