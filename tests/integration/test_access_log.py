"""Every HTTP request leaves one access-log line: method, path, status and time — never the
query string, which carries phone numbers."""

import logging

import pytest


def test_a_request_is_logged_with_its_path_and_status_but_not_its_query(api, caplog):
    with caplog.at_level(logging.INFO, logger="huiyuan.http"):
        response = api.get("/v1/members", phone="13800138000")
        missing = api.get("/v1/members/nobody/points")
    lines = [r.getMessage() for r in caplog.records if r.name == "huiyuan.http"]
    assert len(lines) == 2
    assert lines[0].startswith(f"GET /v1/members {response.status_code} ")
    assert lines[1].startswith(f"GET /v1/members/nobody/points {missing.status_code} ")
    assert missing.status_code == 404
    assert all(line.endswith("ms") for line in lines)
    assert not any("13800138000" in line for line in lines)


def test_a_request_that_fails_with_a_bug_is_logged_as_a_500(api, caplog, monkeypatch):
    from huiyuan.services import points

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(points, "summary", broken)
    with caplog.at_level(logging.INFO, logger="huiyuan.http"), pytest.raises(RuntimeError):
        api.get("/v1/members/u1/points")
    lines = [r.getMessage() for r in caplog.records if r.name == "huiyuan.http"]
    assert len(lines) == 1 and lines[0].startswith("GET /v1/members/u1/points 500 ")
