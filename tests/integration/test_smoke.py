def test_a_registered_member_can_be_read_back(api):
    # given a registration
    response = api.post(
        "/v1/events",
        {
            "id": "e1",
            "type": "member.registered",
            "occurred_at": "2026-02-01T10:00:00+08:00",
            "member_id": "u1",
            "data": {"phone": "+86 138 0013 8000", "name": "张伟", "channel": "app"},
        },
    )
    # then it is applied and the member is readable
    assert response.status_code == 200, response.json()
    member = api.get("/v1/members/u1").json()
    assert member["profile"]["phone"] == "13800138000"
    assert [e["program_id"] for e in member["enrollments"]] == ["platform"]
