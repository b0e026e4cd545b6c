"""Tier ladders (等级) without a database: which tier a metric earns, upgrades across several
tiers, retention (保级) and downgrades at checkpoints, hand-set tiers, when the next checkpoint
falls (always the start of a business day in Asia/Shanghai) and what the next tier needs."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain import tiers as dt

SHANGHAI = ZoneInfo("Asia/Shanghai")
REACHED = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

# A JD-like ladder: 注册 / 铜牌 / 银牌 / 金牌 / 钻石, the top two kept with less than they took.
TIERS = (
    dt.Tier("registered", "注册会员", "Registered", 0),
    dt.Tier("bronze", "铜牌会员", "Bronze", 500, upgrade_gift_points=50),
    dt.Tier("silver", "银牌会员", "Silver", 2000, upgrade_gift_points=100),
    dt.Tier("gold", "金牌会员", "Gold", 6000, retention=5000, upgrade_gift_points=300),
    dt.Tier("diamond", "钻石会员", "Diamond", 15000, retention=12000, upgrade_gift_points=800),
)


def ladder(**settings):
    settings.setdefault("checkpoint", dt.Checkpoint.MONTHLY)
    return dt.Ladder(TIERS, **settings)


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def ids(tiers):
    return [t.id for t in tiers]


# ---------------------------------------------------------------- the ladder itself


def test_a_ladder_starts_at_zero_and_rises_strictly():
    # given tiers that do not start at 0, or two tiers at the same threshold
    # then the ladder is refused
    with pytest.raises(ValueError, match="threshold 0"):
        dt.Ladder((dt.Tier("bronze", "铜牌", "Bronze", 500),))
    with pytest.raises(ValueError, match="rise strictly"):
        dt.Ladder((TIERS[0], TIERS[2], TIERS[1]))
    with pytest.raises(ValueError, match="rise strictly"):
        dt.Ladder((TIERS[0], TIERS[1], dt.Tier("bronze2", "铜牌2", "Bronze 2", 500)))


def test_a_tier_is_kept_at_its_retention_or_else_its_threshold():
    # given gold needs 6000 to reach but 5000 to keep, and silver names no retention
    # then gold is kept at 5000 and silver at its own threshold
    assert ladder().get("gold").keep_at == 5000
    assert ladder().get("silver").keep_at == 2000
    with pytest.raises(KeyError):
        ladder().index("platinum")


@pytest.mark.parametrize(
    ("value", "tier"),
    [
        (0, "registered"),
        (499, "registered"),
        (500, "bronze"),
        (1999, "bronze"),
        (2000, "silver"),
        (14999, "gold"),
        (15000, "diamond"),
        (10**9, "diamond"),
    ],
)
def test_the_metric_earns_the_highest_tier_whose_threshold_it_reaches(value, tier):
    # when a member's growth is ``value``, then they have earned ``tier``
    assert dt.earned_tier(ladder(), value).id == tier


# ---------------------------------------------------------------- upgrades


def test_one_big_order_climbs_several_tiers_at_once_passing_each():
    # given a registered member
    # when their growth jumps to 6000 with one order
    # then they pass bronze and silver on the way to gold (each passed tier's gift is due)
    assert ids(dt.upgrade_path(ladder(), "registered", 6000)) == ["bronze", "silver", "gold"]
    decision = dt.decide_on_change(ladder(), "registered", 6000, None, REACHED)
    assert decision == dt.Decision("gold", "upgrade", ("bronze", "silver", "gold"))


def test_growth_that_earns_nothing_higher_moves_nothing():
    # given a gold member
    # then more growth short of diamond, or growth at the top, moves nothing
    assert dt.upgrade_path(ladder(), "gold", 14999) == []
    assert dt.upgrade_path(ladder(), "diamond", 10**9) == []
    assert ids(dt.upgrade_path(ladder(), "gold", 15000)) == ["diamond"]


def test_a_change_of_the_metric_never_downgrades():
    # given a diamond member whose growth fell to 0 (refunds, an emptied window)
    # when the metric changes
    # then nothing happens until a checkpoint
    assert dt.decide_on_change(ladder(), "diamond", 0, None, REACHED) == dt.Decision(
        "diamond", "unchanged"
    )


def test_a_fixed_tier_ignores_growth_until_its_end_date_but_a_floor_does_not():
    # given a member fixed at silver by an operator until April 1st
    fixed = dt.Override("silver", "fixed", shanghai(2026, 4, 1))
    # when their growth would earn diamond in March
    # then they stay silver
    assert dt.decide_on_change(ladder(), "silver", 20000, fixed, REACHED).tier_id == "silver"
    # and from April 1st (the end date itself) they climb as anyone would
    after = dt.decide_on_change(ladder(), "silver", 20000, fixed, shanghai(2026, 4, 1))
    assert after == dt.Decision("diamond", "upgrade", ("gold", "diamond"))
    # and a floor never holds anyone down
    floor = dt.Override("silver", "floor", None)
    assert dt.decide_on_change(ladder(), "silver", 6000, floor, REACHED).tier_id == "gold"


# ---------------------------------------------------------------- checkpoints


def at_checkpoint(current, value, *, at=None, override=None, **settings):
    at = at or shanghai(2026, 6, 1)
    return dt.decide_at_checkpoint(ladder(**settings), current, value, REACHED, override, at)


def test_a_member_meeting_the_retention_threshold_keeps_the_tier():
    # given a gold member (6000 to reach, 5000 to keep)
    # when the checkpoint finds 5000 growth, then gold is retained
    assert at_checkpoint("gold", 5000) == dt.Decision("gold", "retained")
    # when it finds 4999, then they drop to what 4999 earns: silver
    assert at_checkpoint("gold", 4999) == dt.Decision("silver", "downgrade")


def test_drop_supported_falls_to_what_the_metric_earns_and_drop_one_by_one_tier():
    # given a diamond member whose growth fell to 100
    # when the program drops to the supported tier, then they land on registered
    assert at_checkpoint("diamond", 100, drop="supported").tier_id == "registered"
    # when the program drops one tier per checkpoint, then they land on gold
    assert at_checkpoint("diamond", 100, drop="one") == dt.Decision("gold", "downgrade")


def test_the_minimum_stay_and_grace_period_protect_a_new_tier():
    # given a program guaranteeing 30 days in a tier plus 7 days' grace
    settings = {"min_stay_days": 30, "grace_days": 7}
    protected_until = REACHED + timedelta(days=37)
    # when a checkpoint comes a moment before 37 days are up
    # then the member keeps gold whatever their growth
    early = at_checkpoint("gold", 0, at=protected_until - timedelta(seconds=1), **settings)
    assert early == dt.Decision("gold", "retained")
    # and once 37 days are up the retention rule applies
    late = at_checkpoint("gold", 0, at=protected_until, **settings)
    assert late == dt.Decision("registered", "downgrade")


def test_the_lowest_tier_is_always_retained_and_a_no_downgrade_ladder_never_drops():
    # given a registered member with no growth, then there is nowhere lower to go
    assert at_checkpoint("registered", 0) == dt.Decision("registered", "retained")
    # given a retailer whose ladder never downgrades (checkpoint "none")
    # then even a diamond member with no growth keeps diamond
    unchanged = at_checkpoint("diamond", 0, checkpoint=dt.Checkpoint.NONE)
    assert unchanged == dt.Decision("diamond", "unchanged")


def test_a_checkpoint_upgrades_a_member_whose_metric_already_earns_more():
    # given a silver member whose growth earns gold (e.g. a hand-set tier has ended)
    # then the checkpoint lifts them, passing gold
    assert at_checkpoint("silver", 7000) == dt.Decision("gold", "upgrade", ("gold",))


def test_a_floor_holds_a_member_up_until_its_end_date():
    # given a diamond member with no growth and an operator's floor at silver until July 1st
    floor = dt.Override("silver", "floor", shanghai(2026, 7, 1))
    # when the June checkpoint comes, then they drop no lower than silver
    assert at_checkpoint("diamond", 0, override=floor) == dt.Decision("silver", "downgrade")
    # when the member is already on the floor, then they stay there
    assert at_checkpoint("silver", 0, override=floor) == dt.Decision("silver", "retained")
    # and drop-one never drops through the floor either
    assert at_checkpoint("silver", 0, override=floor, drop="one").tier_id == "silver"
    # when the July checkpoint comes after the floor ended, then they drop to what they earn
    july = at_checkpoint("silver", 0, override=floor, at=shanghai(2026, 7, 1))
    assert july == dt.Decision("registered", "downgrade")


def test_a_fixed_tier_is_left_alone_by_checkpoints_until_its_end_date():
    # given a member fixed at gold with no growth until July 1st
    fixed = dt.Override("gold", "fixed", shanghai(2026, 7, 1))
    # when the June checkpoint comes, then gold stands (as the operator's decision)
    assert at_checkpoint("gold", 0, override=fixed) == dt.Decision("gold", "override")
    # and a fixed tier without an end date stands for ever
    forever = dt.Override("gold", "fixed", None)
    assert at_checkpoint("gold", 0, override=forever, at=shanghai(2036, 1, 1)).tier_id == "gold"
    # when the July checkpoint comes, then the ladder decides again
    assert at_checkpoint("gold", 0, override=fixed, at=shanghai(2026, 7, 1)).tier_id == (
        "registered"
    )


# ---------------------------------------------------------------- when the next checkpoint is


def checkpoint_after(kind, after, reached=REACHED):
    return dt.next_checkpoint(ladder(checkpoint=kind), reached, after, SHANGHAI)


def test_a_monthly_checkpoint_is_midnight_shanghai_on_the_first_16_00_utc_the_day_before():
    # given a member evaluated monthly, seen on March 15th
    found = checkpoint_after(dt.Checkpoint.MONTHLY, shanghai(2026, 3, 15, 10))
    # then the next checkpoint is April 1st 00:00 in Shanghai, which is March 31st 16:00 UTC
    assert found == shanghai(2026, 4, 1)
    assert found.astimezone(UTC) == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)


def test_a_monthly_checkpoint_is_strictly_after_and_follows_the_shanghai_calendar():
    # when evaluated exactly at the April checkpoint, then the next one is May 1st
    assert checkpoint_after(dt.Checkpoint.MONTHLY, shanghai(2026, 4, 1)) == shanghai(2026, 5, 1)
    # when it is still March 31st in UTC but already April 1st in Shanghai, then May 1st
    late_utc = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    assert checkpoint_after(dt.Checkpoint.MONTHLY, late_utc) == shanghai(2026, 5, 1)
    # when one second before the Shanghai midnight, then that midnight
    just_before = datetime(2026, 3, 31, 15, 59, 59, tzinfo=UTC)
    assert checkpoint_after(dt.Checkpoint.MONTHLY, just_before) == shanghai(2026, 4, 1)
    # when in December, then January 1st of the next year
    assert checkpoint_after(dt.Checkpoint.MONTHLY, shanghai(2026, 12, 31, 23)) == shanghai(
        2027, 1, 1
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (shanghai(2026, 2, 10), shanghai(2026, 4, 1)),
        (shanghai(2026, 3, 31, 23, 59), shanghai(2026, 4, 1)),
        (shanghai(2026, 4, 1), shanghai(2026, 7, 1)),
        (datetime(2026, 3, 31, 17, 0, tzinfo=UTC), shanghai(2026, 7, 1)),
        (shanghai(2026, 8, 20), shanghai(2026, 10, 1)),
        (shanghai(2026, 11, 5), shanghai(2027, 1, 1)),
    ],
)
def test_a_quarterly_checkpoint_is_the_first_day_of_the_next_quarter(after, expected):
    # when a quarterly ladder is evaluated at ``after``, then the next checkpoint is ``expected``
    assert checkpoint_after(dt.Checkpoint.QUARTERLY, after) == expected


def test_an_anniversary_checkpoint_is_the_day_the_tier_was_reached_each_year():
    # given a member who reached their tier on 2026-03-01 10:00 Shanghai
    # when we ask right after, then it is the first anniversary, 2027-03-01 00:00 Shanghai
    assert checkpoint_after(dt.Checkpoint.ANNIVERSARY, REACHED) == shanghai(2027, 3, 1)
    # when evaluated exactly at that anniversary, then the next is a year later
    assert checkpoint_after(dt.Checkpoint.ANNIVERSARY, shanghai(2027, 3, 1)) == shanghai(2028, 3, 1)
    # and the anniversary counts by the Shanghai date: 01:00 on March 1st in Shanghai is still
    # February 28th in UTC
    early = datetime(2026, 2, 28, 17, 0, tzinfo=UTC)
    assert checkpoint_after(dt.Checkpoint.ANNIVERSARY, early, reached=early) == shanghai(2027, 3, 1)


def test_a_tier_reached_on_february_29th_is_evaluated_on_february_28th_in_other_years():
    # given a member who reached their tier on 2028-02-29 (a leap day) in Shanghai
    leap = shanghai(2028, 2, 29, 9)
    anniversary = dt.Checkpoint.ANNIVERSARY
    # then the anniversaries are Feb 28th in common years and Feb 29th in leap years
    first = checkpoint_after(anniversary, leap, reached=leap)
    assert first == shanghai(2029, 2, 28)
    second = checkpoint_after(anniversary, first, reached=leap)
    assert second == shanghai(2030, 2, 28)
    assert checkpoint_after(anniversary, shanghai(2031, 2, 28), reached=leap) == shanghai(
        2032, 2, 29
    )
    assert first.astimezone(UTC) == datetime(2029, 2, 27, 16, 0, tzinfo=UTC)


def test_a_ladder_without_downgrades_has_no_checkpoint():
    assert checkpoint_after(dt.Checkpoint.NONE, REACHED) is None


@given(
    after=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
    ),
    kind=st.sampled_from([dt.Checkpoint.MONTHLY, dt.Checkpoint.QUARTERLY]),
)
def test_every_calendar_checkpoint_is_a_first_of_month_midnight_in_shanghai_after_now(after, kind):
    # whenever a monthly or quarterly ladder is evaluated
    found = checkpoint_after(kind, after, reached=after)
    assert found is not None
    local = found.astimezone(SHANGHAI)
    # then the next checkpoint is strictly later, at 00:00 Shanghai on the 1st of a month
    assert found > after
    assert (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0)
    assert found.astimezone(UTC).hour == 16
    # and no later than one month (or one quarter) away
    assert found - after <= timedelta(days=31 if kind is dt.Checkpoint.MONTHLY else 92)
    if kind is dt.Checkpoint.QUARTERLY:
        assert local.month in (1, 4, 7, 10)


@given(
    reached=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2080, 12, 31), timezones=st.just(UTC)
    ),
    years=st.integers(min_value=0, max_value=5),
)
def test_anniversaries_come_once_a_year_on_the_reached_date(reached, years):
    # given a member who reached their tier at ``reached`` and was evaluated ``years`` times
    after = reached
    for _ in range(years + 1):
        found = checkpoint_after(dt.Checkpoint.ANNIVERSARY, after, reached=reached)
        assert found is not None and found > after
        after = found
    anchor = reached.astimezone(SHANGHAI).date()
    local = after.astimezone(SHANGHAI)
    # then the last one falls in the year ``years + 1`` after, on the reached month and day
    # (February 28th for a leap day in a common year), at midnight Shanghai
    assert local.year == anchor.year + years + 1
    assert local.month == anchor.month
    assert local.day == anchor.day or (anchor.month, anchor.day, local.day) == (2, 29, 28)
    assert (local.hour, local.minute) == (0, 0)


# ---------------------------------------------------------------- progress


def test_progress_says_what_the_next_tier_needs_and_what_keeps_this_one():
    # given a silver member with 5680 growth
    found = dt.progress(ladder(), "silver", 5680)
    # then 320 more reach gold, and 2000 keep silver
    assert (found.next_tier and found.next_tier.id, found.needed, found.keep_at) == (
        "gold",
        320,
        2000,
    )
    # given a gold member with 5200, then diamond needs 9800 and gold is kept at 5000
    gold = dt.progress(ladder(), "gold", 5200)
    assert (gold.next_tier and gold.next_tier.id, gold.needed, gold.keep_at) == (
        "diamond",
        9800,
        5000,
    )


def test_progress_at_the_top_needs_nothing_and_never_a_negative_amount():
    # given a diamond member, then there is no next tier
    assert dt.progress(ladder(), "diamond", 20000) == dt.Progress(None, 0, 12000)
    # given a member held at bronze (fixed) whose growth already passes silver
    # then silver needs nothing more, never a negative amount
    held = dt.progress(ladder(), "bronze", 3000)
    assert (held.next_tier and held.next_tier.id, held.needed) == ("silver", 0)
