"""One member's growth (成长值) and tier in one program.

Growth entries are append-only with a unique idempotency key; the lifetime total on the
member's tier row is their cache, maintained in SQL. After any change of the tier metric
``after_change`` upgrades at once (several tiers at a time, each passed tier's gift once per
configured period); downgrades wait for a checkpoint (``at_checkpoint``), unless the program
says a refund may lower the tier at once. Every move is written to the tier history with its
cause.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select

from huiyuan.db import tiers_repo
from huiyuan.db.tables import tier_gifts
from huiyuan.domain import tiers as dt
from huiyuan.domain.points import Award
from huiyuan.services.context import Services
from huiyuan.services.points_book import PointsBook
from huiyuan.services.program_configs import ProgramConfig

Effect = dict[str, Any]
MOVE_EFFECTS = {"upgrade": "tier.upgraded", "downgrade": "tier.downgraded"}


class TierBook:
    def __init__(
        self,
        svc: Services,
        conn: Connection,
        config: ProgramConfig,
        member_id: str,
        at: datetime,
        *,
        actor: str,
        owner_id: str,
        store_scope: str | None,
    ) -> None:
        self.svc, self.conn, self.config = svc, conn, config
        self.program_id = config.program_id
        self.member_id = member_id
        self.at = at
        self.actor = actor
        self.owner_id = owner_id
        self.store_scope = store_scope  # a store program counts that store's orders only
        doc = config.document.tiers
        self.ladder: dt.Ladder | None = doc.to_domain() if doc is not None else None
        self._row: Row[Any] | None = None

    # ------------------------------------------------------------ state

    def row(self) -> Row[Any]:
        if self._row is None:
            lowest = self.ladder.tiers[0].id if self.ladder else "-"
            self._row = tiers_repo.lock_member_tier(
                self.conn, self.program_id, self.member_id, lowest, self.at
            )
            if self.ladder and self._row.next_check_at is None and self._checkpointed():
                self._schedule(self._row.reached_at)
        return self._row

    def _reload(self) -> None:
        self._row = None

    @property
    def tier_id(self) -> str | None:
        if self.ladder is None:
            return None
        tier = self.row().tier_id
        return tier if tier in {t.id for t in self.ladder.tiers} else self.ladder.tiers[0].id

    def _checkpointed(self) -> bool:
        return self.ladder is not None and self.ladder.checkpoint is not dt.Checkpoint.NONE

    def _schedule(self, after: datetime) -> None:
        assert self.ladder is not None
        reached = self.row().reached_at if self._row is not None else after
        at = dt.next_checkpoint(self.ladder, reached, after, self.svc.settings.zone)
        tiers_repo.set_member_tier(
            self.conn, self.program_id, self.member_id, {"next_check_at": at}
        )

    # ------------------------------------------------------------ growth

    def credit(
        self,
        amount: int,
        idem_key: str,
        *,
        kind: str,
        rule_id: str | None,
        zh: str,
        en: str,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
        basis_fen: int | None = None,
    ) -> int:
        """Write a growth entry (positive or negative); 0 if zero or already written.
        ``basis_fen``: for purchase growth, the money it was credited for."""
        if amount == 0:
            return 0
        self.row()
        written = tiers_repo.insert_growth(
            self.conn,
            {
                "program_id": self.program_id,
                "member_id": self.member_id,
                "amount": amount,
                "kind": kind,
                "rule_id": rule_id,
                "config_version": self.config.version,
                "idem_key": idem_key,
                "order_id": order_id,
                "reason_zh": zh[:300],
                "reason_en": en[:300],
                "actor": self.actor,
                "occurred_at": occurred_at or self.at,
                "created_at": self.svc.now(),
                "basis_fen": basis_fen,
            },
        )
        if not written:
            return 0
        tiers_repo.add_growth_total(self.conn, self.program_id, self.member_id, amount)
        self._reload()
        return amount

    def metric(self, at: datetime | None = None) -> int:
        """The value the ladder's thresholds count, at ``at`` (default: the book's instant)."""
        at = at or self.at
        if self.ladder is None:
            return int(self.row().growth_total)
        since = at - timedelta(days=self.ladder.window_days)
        metric = self.ladder.metric
        if metric is dt.Metric.GROWTH_LIFETIME:
            value = int(self.row().growth_total)
        elif metric is dt.Metric.GROWTH_WINDOW:
            value = tiers_repo.growth_since(self.conn, self.program_id, self.member_id, since)
        elif metric is dt.Metric.SPEND_WINDOW:
            value = tiers_repo.spend_since(self.conn, self.member_id, self.store_scope, since)
        elif metric is dt.Metric.RECHARGE_TOTAL:
            value = tiers_repo.recharged_total(self.conn, self.program_id, self.member_id)
        else:
            value = tiers_repo.points_earned_since(
                self.conn, self.program_id, self.member_id, since
            )
        return max(value, 0)

    # ------------------------------------------------------------ tier moves

    def _override(self) -> dt.Override | None:
        row = self.row()
        if row.override_tier is None:
            return None
        return dt.Override(row.override_tier, row.override_mode, row.override_ends_at)

    def after_change(self, *, refund: bool = False) -> list[Effect]:
        """Upgrade at once if the metric now earns a higher tier."""
        if self.ladder is None:
            return []
        current = self.tier_id
        assert current is not None
        value = self.metric()
        decision = dt.decide_on_change(self.ladder, current, value, self._override(), self.at)
        if decision.cause == "unchanged" and refund and not self.ladder.keep_on_refund:
            target = dt.earned_tier(self.ladder, value)
            override = self._override()
            if override is not None and override.active(self.at) and override.mode == "floor":
                floor = self.ladder.index(override.tier_id)
                if self.ladder.index(target.id) < floor:
                    target = self.ladder.tiers[floor]
            if self.ladder.index(target.id) < self.ladder.index(current):
                decision = dt.Decision(target.id, "downgrade")
        return self._apply(decision, value, "metric changed")

    def at_checkpoint(self) -> list[Effect]:
        if self.ladder is None:
            return []
        current = self.tier_id
        assert current is not None
        value = self.metric()
        row = self.row()
        decision = dt.decide_at_checkpoint(
            self.ladder, current, value, row.reached_at, self._override(), self.at
        )
        effects = self._apply(decision, value, "checkpoint")
        self._schedule(self.at)
        return effects or [
            {
                "kind": "tier.retained",
                "program_id": self.program_id,
                "tier_id": current,
                "metric": value,
            }
        ]

    def _apply(self, decision: dt.Decision, value: int, why: str) -> list[Effect]:
        current = self.tier_id
        if decision.tier_id == current or decision.cause in ("unchanged", "retained"):
            return []
        self.move(decision.tier_id, decision.cause, value, why)
        effects: list[Effect] = [
            {
                "kind": MOVE_EFFECTS.get(decision.cause, "tier.set"),
                "program_id": self.program_id,
                "from": current,
                "to": decision.tier_id,
                "metric": value,
            }
        ]
        for tier_id in decision.passed:
            effects += self._gift(tier_id)
        return effects

    def move(self, to: str, cause: str, value: int, reason: str) -> None:
        current = self.row().tier_id
        tiers_repo.set_member_tier(
            self.conn,
            self.program_id,
            self.member_id,
            {"tier_id": to, "reached_at": self.at, "updated_at": self.svc.now()},
        )
        tiers_repo.add_history(
            self.conn,
            {
                "program_id": self.program_id,
                "member_id": self.member_id,
                "from_tier": current,
                "to_tier": to,
                "cause": cause,
                "metric_value": value,
                "reason": reason[:300],
                "actor": self.actor,
                "at": self.at,
            },
        )
        self._reload()
        if self._checkpointed():
            self._schedule(self.at)
            self._reload()

    def _gift(self, tier_id: str) -> list[Effect]:
        assert self.ladder is not None
        tier = self.ladder.get(tier_id)
        if tier.upgrade_gift_points <= 0:
            return []
        period = "once"
        if self.ladder.gift_period_days:
            # Once per period counted from this tier's last gift to the member, not by fixed
            # calendar buckets (a climb on each side of a bucket's edge would get two gifts).
            last = self.conn.execute(
                select(func.max(tier_gifts.c.granted_at)).where(
                    tier_gifts.c.program_id == self.program_id,
                    tier_gifts.c.member_id == self.member_id,
                    tier_gifts.c.tier_id == tier_id,
                )
            ).scalar_one()
            if last is not None and last > self.at - timedelta(days=self.ladder.gift_period_days):
                return []
            period = f"t{int(self.at.timestamp())}"
        if not tiers_repo.grant_gift_once(
            self.conn, self.program_id, self.member_id, tier_id, period, self.at
        ):
            return []
        book = PointsBook(
            self.svc,
            self.conn,
            self.config,
            self.member_id,
            self.at,
            actor=self.actor,
            owner_id=self.owner_id,
        )
        award = Award(
            f"gift:{tier_id}",
            tier.upgrade_gift_points,
            f"升级为{tier.name_zh}礼包",
            f"upgrade gift: {tier.name_en}",
        )
        # The key names the member: points keys are unique per program, not per member.
        book.credit(award, f"gift:{self.member_id}:{tier_id}:{period}", pending=False)
        return [
            {
                "kind": "tier.gift",
                "program_id": self.program_id,
                "tier_id": tier_id,
                "points": tier.upgrade_gift_points,
            }
        ]
