"""Business time: what "a day" means for daily limits, sign-ins and reports.

All instants are stored in UTC; the business day of an instant is its date in the configured zone
(Asia/Shanghai by default), so a login at 23:59 and one at 00:01 Shanghai time are two days even
though both fall on the same UTC date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def require_aware(moment: datetime, what: str = "time") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must carry a UTC offset")
    return moment.astimezone(UTC)


def business_day(moment: datetime, zone: ZoneInfo) -> date:
    return require_aware(moment).astimezone(zone).date()


def day_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """The instant the business day holding ``moment`` began (00:00 in ``zone``)."""
    return datetime.combine(business_day(moment, zone), time(0), tzinfo=zone)


def month_starts(moment: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    """The starts (00:00 on the 1st, in ``zone``) of the ``count`` business months up to the
    one holding ``moment``, oldest first, then the start of the month after it: ``count + 1``
    bounds of ``count`` months."""
    first = business_day(moment, zone).replace(day=1)
    bounds = []
    for back in range(count - 1, -2, -1):
        index = first.year * 12 + first.month - 1 - back
        bounds.append(datetime.combine(date(index // 12, index % 12 + 1, 1), time(0), tzinfo=zone))
    return bounds


def utc_now() -> datetime:
    return datetime.now(UTC)
