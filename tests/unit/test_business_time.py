"""What "a day" is: the date in the business zone, not the UTC date."""

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain.business_time import business_day, require_aware

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_minute_before_and_after_midnight_in_shanghai_are_two_days_on_one_utc_date():
    # given a login at 23:59 and one at 00:01 Shanghai time
    late = datetime(2026, 3, 1, 23, 59, tzinfo=SHANGHAI)
    early = datetime(2026, 3, 2, 0, 1, tzinfo=SHANGHAI)
    # and both fall on the same UTC date
    assert late.astimezone(UTC).date() == early.astimezone(UTC).date() == date(2026, 3, 1)
    # then they are two business days
    assert business_day(late, SHANGHAI) == date(2026, 3, 1)
    assert business_day(early, SHANGHAI) == date(2026, 3, 2)


def test_the_same_instant_in_any_offset_is_the_same_business_day():
    # given one instant written in UTC, in +08:00 and in -05:00
    instant = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    forms = [
        instant,
        instant.astimezone(timezone(timedelta(hours=8))),
        instant.astimezone(timezone(timedelta(hours=-5))),
    ]
    # then each is the 2nd of March in Shanghai (00:30 local)
    assert {business_day(moment, SHANGHAI) for moment in forms} == {date(2026, 3, 2)}


def test_another_business_zone_draws_the_line_elsewhere():
    # given an instant that is already the 2nd in Shanghai but still the 1st in New York
    instant = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    # then each zone names its own day
    assert business_day(instant, SHANGHAI) == date(2026, 3, 2)
    assert business_day(instant, ZoneInfo("America/New_York")) == date(2026, 3, 1)


def test_a_time_without_an_offset_is_refused():
    # given a naive time: nobody can tell which day it was
    naive = datetime(2026, 3, 1, 23, 59)
    # then it is refused rather than guessed at
    with pytest.raises(ValueError, match="UTC offset"):
        business_day(naive, SHANGHAI)
    with pytest.raises(ValueError, match="occurred_at must carry a UTC offset"):
        require_aware(naive, "occurred_at")


def test_an_aware_time_is_brought_to_utc():
    # given a Shanghai time
    local = datetime(2026, 3, 2, 0, 1, tzinfo=SHANGHAI)
    # then it becomes the same instant in UTC
    moment = require_aware(local)
    assert moment.tzinfo is UTC
    assert moment == local
    assert moment.hour == 16


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_the_business_day_is_the_shanghai_calendar_date(naive_utc):
    # given any instant
    instant = naive_utc.replace(tzinfo=UTC)
    # then its business day is the calendar date eight hours later (Shanghai has no DST)
    assert business_day(instant, SHANGHAI) == (naive_utc + timedelta(hours=8)).date()
