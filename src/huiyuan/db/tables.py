"""The schema. Money is integer fen, instants are UTC, and the database backs every invariant it
can: unique idempotency keys, non-negative amounts, refunds never above the order.

Member-scoped tables carry ``member_id`` so they can be distributed by member (Citus) later
without a rewrite.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

from huiyuan.db.types import UTCDateTime, document_type, json_type

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64  # length of every external identifier

# Foreign keys that PostgreSQL checks once per statement, over all the rows it added, by a
# trigger of the same name (migration 0017): as foreign keys they ran a query per row, 9% of
# a batch's CPU. What they point at is never deleted nor re-keyed, which PostgreSQL refuses.
# SQLite keeps them as foreign keys.
CHECKED_PER_STATEMENT = frozenset(
    {
        "fk_orders_member_id_members",
        "fk_order_items_order_id_orders",
        "fk_point_entries_txn_id_point_txns",
    }
)

owners = Table(
    "owners",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("kind in ('platform', 'store')", name="kind"),
)

programs = Table(
    "programs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("owner_id", String(ID), ForeignKey("owners.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_id", String(ID), ForeignKey("owners.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

members = Table(
    "members",
    metadata,
    Column("member_id", String(ID), primary_key=True),
    Column("phone", String(20), index=True),
    Column("name", String(100)),
    Column("nickname", String(100)),
    Column("gender", String(8)),
    Column("birthday", Date),
    Column("region", String(100)),
    Column("email", String(254)),
    Column("avatar_url", String(500)),
    Column("education", String(50)),
    Column("occupation", String(100)),
    Column("registered_at", UTCDateTime()),
    Column("registration_channel", String(32)),
    Column("registration_store_id", String(ID)),
    Column("inviter_id", String(ID)),
    Column("addresses", json_type(), nullable=False),
    Column("invoice_titles", json_type(), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("profile_updated_at", UTCDateTime()),
    Column("last_login_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("origin in ('registered', 'auto')", name="origin"),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", String(ID), ForeignKey("members.member_id"), nullable=False),
    Column("program_id", String(ID), ForeignKey("programs.id"), nullable=False, index=True),
    Column("enrolled_at", UTCDateTime(), nullable=False),
    Column("source_event_id", String(128)),
    UniqueConstraint("member_id", "program_id", name="uq_enrollments_member_program"),
)

events = Table(
    "events",
    metadata,
    Column("sender", String(ID), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("store_id", String(ID)),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("data", document_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("waiting_on", String(200)),
    Column("response_status", Integer, nullable=False),
    Column("response_body", document_type(), nullable=False),
    Column("result", document_type()),  # the outcome when it differs from the first response
    Column("applied_at", UTCDateTime()),
    CheckConstraint("status in ('applied', 'deferred', 'rejected')", name="status"),
    CheckConstraint("(status = 'deferred') = (waiting_on is not null)", name="waiting"),
)
# Only deferred events are looked up by what they wait on: applied ones stay out of the index.
Index(
    "ix_events_waiting_on",
    events.c.waiting_on,
    events.c.occurred_at,
    postgresql_where=events.c.waiting_on.is_not(None),
    sqlite_where=events.c.waiting_on.is_not(None),
)

# Group commit (PostgreSQL): a single event waits here, durable, until its partition's leader
# applies it together with the others that arrived meanwhile (``services.group_commit``). Rows
# live for milliseconds: the requester deletes its row once it has read the outcome. The index
# leaves ``status`` out so that recording the outcome is a HOT update.
event_queue = Table(
    "event_queue",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("part", Integer, nullable=False),
    Column("sender", String(ID), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("store_id", String(ID)),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("data", json_type(), nullable=False),
    Column("queued_at", UTCDateTime(), nullable=False),
    Column("status", String(8), nullable=False),
    Column("outcome_status", Integer),
    Column("outcome_body", json_type()),
    Column("replayed", Boolean),
    # False: the requester was answered when the event was queued (``Prefer: respond-async``);
    # the leader deletes the row instead of storing an outcome nobody collects.
    Column("waits", Boolean, nullable=False, server_default=true()),
    CheckConstraint("status in ('queued', 'done', 'solo')", name="status"),
    CheckConstraint("(status = 'done') = (outcome_status is not null)", name="outcome"),
    postgresql_with={"fillfactor": 50},
)
Index("ix_event_queue_part", event_queue.c.part, event_queue.c.id)

# The refusal (4xx) or failure (5xx) of an event sent without waiting (``Prefer:
# respond-async``): nothing of such an event is stored, so this is what ``GET
# /v1/events/{id}`` tells its sender, for ``HUIYUAN_EVENT_OUTCOME_RETENTION_DAYS``. Apart from
# the queue, so that the queue a leader scans stays small however long refusals are kept.
event_outcomes = Table(
    "event_outcomes",
    metadata,
    Column("sender", String(ID), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", json_type(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    CheckConstraint("status >= 400", name="status"),
)
Index("ix_event_outcomes_decided", event_outcomes.c.decided_at)

# Per partition, the newest queue id a leader has taken: how far behind a new event is.
event_queue_parts = Table(
    "event_queue_parts",
    metadata,
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("taken_upto", BigInteger, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(ID), primary_key=True),
    Column("member_id", String(ID), ForeignKey("members.member_id"), nullable=False),
    Column("store_id", String(ID)),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("shipping_fee", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("channel", String(32)),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime()),
    Column("cancelled_at", UTCDateTime()),
    Column("sender", String(ID), nullable=False),
    Column("paid_event_id", String(128), nullable=False),
    CheckConstraint("status in ('paid', 'completed', 'cancelled')", name="status"),
    CheckConstraint("amount >= 0 and shipping_fee >= 0", name="amounts"),
    CheckConstraint("refunded_amount >= 0 and refunded_amount <= amount", name="refund_bound"),
)
Index("ix_orders_member_paid", orders.c.member_id, orders.c.paid_at)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", String(ID), ForeignKey("orders.order_id"), primary_key=True),
    Column("line_no", Integer, nullable=False),  # the order of the lines, not a key (0014)
    Column("sku", String(ID), primary_key=True),  # refunds, reviews and benefits name a line so
    Column("name", String(200), nullable=False),
    Column("category", String(200)),
    Column("brand", String(200)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("paid_amount", BigInteger, nullable=False),
    Column("virtual", Boolean, nullable=False),
    Column("refunded_quantity", Integer, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    CheckConstraint("quantity > 0 and unit_price >= 0 and paid_amount >= 0", name="amounts"),
    CheckConstraint(
        "refunded_quantity between 0 and quantity and refunded_amount between 0 and paid_amount",
        name="refund_bound",
    ),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(ID), primary_key=True),
    Column("order_id", String(ID), ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("items", json_type(), nullable=False),
    Column("reason", Text),
    Column("refunded_at", UTCDateTime(), nullable=False),
    CheckConstraint("amount > 0", name="amount"),
)

reviews = Table(
    "reviews",
    metadata,
    Column("review_id", String(ID), primary_key=True),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("order_id", String(ID)),
    Column("sku", String(ID)),
    Column("rating", Integer),
    Column("has_photos", Boolean, nullable=False),
    Column("approved_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime()),
)
# A photo review's rank among its SKU's (rules for the first N photo reviews) is counted on
# every photo review: only photo reviews are in the index.
Index(
    "ix_reviews_photos_of_sku",
    reviews.c.sku,
    postgresql_where=reviews.c.has_photos.is_(True),
    sqlite_where=reviews.c.has_photos.is_(True),
)

logins = Table(
    "logins",
    metadata,
    Column("member_id", String(ID), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("count", Integer, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("topic", String(100), nullable=False),
    Column("key", String(200), nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("published_at", UTCDateTime()),
)
Index("ix_outbox_unpublished", outbox.c.published_at, outbox.c.id)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("detail", json_type(), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

# ---------------------------------------------------------------- program configuration

program_versions = Table(
    "program_versions",
    metadata,
    Column("program_id", String(ID), ForeignKey("programs.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", json_type(), nullable=False),
    Column("effective_from", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    CheckConstraint("version > 0", name="version"),
)

# ---------------------------------------------------------------- points ledger
# Member balances are a cache of the entries (``huiyuan ledger reconcile`` proves it). System
# accounts (issued, redeemed, expired …) have entries but no balance row: no shared hot row.

point_accounts = Table(
    "point_accounts",
    metadata,
    Column("program_id", String(ID), ForeignKey("programs.id"), primary_key=True),
    Column("member_id", String(ID), primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("debt", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint(
        "available >= 0 and pending >= 0 and reserved >= 0 and debt >= 0", name="non_negative"
    ),
    CheckConstraint("reserved <= available", name="reserved_covered"),
)

point_txns = Table(
    "point_txns",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("order_id", String(ID)),
    Column("rule_id", String(ID)),
    Column("config_version", Integer),
    Column("reason_zh", String(300), nullable=False),
    Column("reason_en", String(300), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("program_id", "idem_key", name="uq_point_txns_idem"),
)
Index("ix_point_txns_member", point_txns.c.program_id, point_txns.c.member_id, point_txns.c.id)

point_entries = Table(
    "point_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("txn_id", BigInteger, ForeignKey("point_txns.id"), nullable=False),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID)),
    Column("account", String(80), nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("lot_id", BigInteger),
    Column("occurred_at", UTCDateTime(), nullable=False),
    CheckConstraint("amount <> 0", name="non_zero"),
    CheckConstraint("(account = 'member') = (member_id is not null)", name="member_leg"),
)
Index(  # member legs only: a transaction's system legs are never looked up (migration 0018)
    "ix_point_entries_txn_member",
    point_entries.c.txn_id,
    postgresql_where=point_entries.c.member_id.is_not(None),
    sqlite_where=point_entries.c.member_id.is_not(None),
)
Index(  # system legs only, by time: the points flow's months (migration 0021)
    "ix_point_entries_system_time",
    point_entries.c.program_id,
    point_entries.c.occurred_at,
    postgresql_where=point_entries.c.member_id.is_(None),
    sqlite_where=point_entries.c.member_id.is_(None),
)
Index(  # member legs only: the system leg is never looked up by member (migration 0008)
    "ix_point_entries_member",
    point_entries.c.program_id,
    point_entries.c.member_id,
    point_entries.c.occurred_at,
    postgresql_where=point_entries.c.member_id.is_not(None),
    sqlite_where=point_entries.c.member_id.is_not(None),
)

point_lots = Table(
    "point_lots",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("issuer", String(ID), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("clawed", BigInteger, nullable=False),
    Column("absorbed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("order_id", String(ID)),
    Column("rule_id", String(ID)),
    Column("txn_id", BigInteger, nullable=False),
    Column("earned_at", UTCDateTime(), nullable=False),
    Column("released_at", UTCDateTime()),
    Column("release_due_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    Column("reminded_at", UTCDateTime()),
    CheckConstraint("amount > 0 and remaining >= 0 and remaining <= amount", name="bounds"),
    CheckConstraint(
        "clawed >= 0 and clawed <= amount and absorbed >= 0 and absorbed <= clawed",
        name="clawed",
    ),
    CheckConstraint(
        "status in ('pending', 'active', 'cancelled', 'expired', 'closed')", name="status"
    ),
)
Index(
    "ix_point_lots_member",
    point_lots.c.program_id,
    point_lots.c.member_id,
    point_lots.c.status,
    point_lots.c.expires_at,
)
Index(  # the expiry and reminder jobs (migration 0013)
    "ix_point_lots_expiry",
    point_lots.c.expires_at,
    postgresql_where=point_lots.c.status == "active",
    sqlite_where=point_lots.c.status == "active",
)
Index(  # the release job: lots of completed orders waiting out their return window (0013)
    "ix_point_lots_release",
    point_lots.c.release_due_at,
    postgresql_where=(point_lots.c.status == "pending") & point_lots.c.release_due_at.is_not(None),
    sqlite_where=(point_lots.c.status == "pending") & point_lots.c.release_due_at.is_not(None),
)
Index("ix_point_lots_order", point_lots.c.order_id)

point_draws = Table(
    "point_draws",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("txn_id", BigInteger, ForeignKey("point_txns.id"), nullable=False, index=True),
    Column("lot_id", BigInteger, ForeignKey("point_lots.id"), nullable=False, index=True),
    Column("kind", String(24), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("restored", BigInteger, nullable=False),
    CheckConstraint("amount > 0 and restored >= 0 and restored <= amount", name="bounds"),
)

# What each restore (a refund or a cancellation giving spent points back) gave back of which
# draw: the draw's ``restored`` is their sum. The liability report prices a give-back at the
# value per point in force when it happened, as the flow does (migration 0019).
point_restores = Table(
    "point_restores",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("txn_id", BigInteger, ForeignKey("point_txns.id"), nullable=False),
    Column("draw_id", BigInteger, ForeignKey("point_draws.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount"),
)

point_reservations = Table(
    "point_reservations",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("reservation_id", String(ID), primary_key=True),
    Column("member_id", String(ID), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("order_id", String(ID)),
    Column("status", String(16), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("txn_id", BigInteger),
    Column("body_hash", String(64), nullable=False),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("status in ('held', 'captured', 'released', 'expired')", name="status"),
)
Index("ix_point_reservations_order", point_reservations.c.program_id, point_reservations.c.order_id)
Index("ix_point_reservations_expiry", point_reservations.c.status, point_reservations.c.expires_at)

# A store's budget of platform points, split in slices so concurrent grants to different
# members rarely wait for the same row.
budget_slices = Table(
    "budget_slices",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("store_id", String(ID), primary_key=True),
    Column("slice", Integer, primary_key=True),
    Column("remaining", BigInteger, nullable=False),
    CheckConstraint("remaining >= 0", name="non_negative"),
)

budget_purchases = Table(
    "budget_purchases",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("purchase_id", String(ID), primary_key=True),
    Column("store_id", String(ID), nullable=False, index=True),
    Column("points", BigInteger, nullable=False),
    Column("paid_fen", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("points > 0 and paid_fen >= 0", name="amounts"),
)

# The points mall (积分商城): each redemption of an item (its points are a ``redeem``
# transaction), and how many of a limited item were redeemed in all. Only an item with a stock
# has a row in ``mall_stock``: redemptions of one limited item wait for each other there, those
# of different items and of unlimited ones never do.
mall_redemptions = Table(
    "mall_redemptions",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("redemption_id", String(ID), primary_key=True),
    Column("member_id", String(ID), nullable=False),
    Column("item_id", String(ID), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("txn_id", BigInteger, ForeignKey("point_txns.id"), nullable=False),
    Column("config_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False, server_default="redeemed"),
    Column("cancelled_at", UTCDateTime()),
    # whether it counted in ``mall_stock`` (the item had a stock when it was redeemed)
    Column("stocked", Boolean, nullable=False, server_default=false()),
    CheckConstraint("quantity > 0 and points > 0", name="amounts"),
    CheckConstraint("status in ('redeemed', 'cancelled')", name="status"),
)
Index(
    "ix_mall_redemptions_member_item",
    mall_redemptions.c.program_id,
    mall_redemptions.c.member_id,
    mall_redemptions.c.item_id,
)

# A benefit (权益) held for a time by one member outside their tier and plan: bought with
# points in the mall (``source`` ``mall:<redemption id>``). A member's grants of one benefit
# follow each other: a new one starts when the last ends.
benefit_grants = Table(
    "benefit_grants",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("benefit_id", String(ID), nullable=False),
    Column("source", String(200), nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("ends_at > starts_at", name="period"),
    UniqueConstraint("program_id", "source", "benefit_id", name="uq_benefit_grants_source"),
)
Index(
    "ix_benefit_grants_member",
    benefit_grants.c.program_id,
    benefit_grants.c.member_id,
    benefit_grants.c.ends_at,
)

mall_stock = Table(
    "mall_stock",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("item_id", String(ID), primary_key=True),
    Column("sold", BigInteger, nullable=False),
    CheckConstraint("sold >= 0", name="non_negative"),
)

# ---------------------------------------------------------------- wallet (余额)
# Principal (本金) and bonus (赠送金) are two buckets of one balance; recharges and spends
# remember their split so refunds return to the same parts.

wallet_accounts = Table(
    "wallet_accounts",
    metadata,
    Column("program_id", String(ID), ForeignKey("programs.id"), primary_key=True),
    Column("member_id", String(ID), primary_key=True),
    Column("principal", BigInteger, nullable=False),
    Column("bonus", BigInteger, nullable=False),
    Column("recharged_total", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("principal >= 0 and bonus >= 0 and recharged_total >= 0", name="non_negative"),
)

wallet_txns = Table(
    "wallet_txns",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("ref_id", String(ID)),
    Column("order_id", String(ID)),
    Column("principal", BigInteger, nullable=False),
    Column("bonus", BigInteger, nullable=False),
    Column("config_version", Integer),
    Column("reason_zh", String(300), nullable=False),
    Column("reason_en", String(300), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("program_id", "idem_key", name="uq_wallet_txns_idem"),
)
Index("ix_wallet_txns_member", wallet_txns.c.program_id, wallet_txns.c.member_id, wallet_txns.c.id)

wallet_entries = Table(
    "wallet_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("txn_id", BigInteger, ForeignKey("wallet_txns.id"), nullable=False, index=True),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID)),
    Column("account", String(80), nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    CheckConstraint("amount <> 0", name="non_zero"),
    CheckConstraint("(account = 'member') = (member_id is not null)", name="member_leg"),
)
Index(  # member legs only: the system leg is never looked up by member (migration 0008)
    "ix_wallet_entries_member",
    wallet_entries.c.program_id,
    wallet_entries.c.member_id,
    wallet_entries.c.occurred_at,
    postgresql_where=wallet_entries.c.member_id.is_not(None),
    sqlite_where=wallet_entries.c.member_id.is_not(None),
)

wallet_recharges = Table(
    "wallet_recharges",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("recharge_id", String(ID), primary_key=True),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("principal", BigInteger, nullable=False),
    Column("bonus", BigInteger, nullable=False),
    Column("refunded", BigInteger, nullable=False),
    Column("bonus_taken_back", BigInteger, nullable=False),
    Column("recharged_at", UTCDateTime(), nullable=False),
    CheckConstraint("principal > 0 and bonus >= 0", name="amounts"),
    CheckConstraint(
        "refunded between 0 and principal and bonus_taken_back between 0 and bonus",
        name="refund_bound",
    ),
)

wallet_payments = Table(
    "wallet_payments",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("payment_id", String(ID), primary_key=True),
    Column("member_id", String(ID), nullable=False, index=True),
    Column("order_id", String(ID)),
    Column("principal", BigInteger, nullable=False),
    Column("bonus", BigInteger, nullable=False),
    Column("refunded_principal", BigInteger, nullable=False),
    Column("refunded_bonus", BigInteger, nullable=False),
    Column("paid_at", UTCDateTime(), nullable=False),
    CheckConstraint("principal >= 0 and bonus >= 0 and principal + bonus > 0", name="amounts"),
    CheckConstraint(
        "refunded_principal between 0 and principal and refunded_bonus between 0 and bonus",
        name="refund_bound",
    ),
)

# Once-a-day facts: a member signs in at most once per business day.
signins = Table(
    "signins",
    metadata,
    Column("member_id", String(ID), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("signed_at", UTCDateTime(), nullable=False),
    Column("streak", Integer, nullable=False),
    CheckConstraint("streak >= 1", name="streak"),
)

# ---------------------------------------------------------------- growth (成长值) and tiers

growth_entries = Table(
    "growth_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("rule_id", String(ID)),
    Column("config_version", Integer),
    Column("idem_key", String(200), nullable=False),
    Column("order_id", String(ID)),
    Column("reason_zh", String(300), nullable=False),
    Column("reason_en", String(300), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # purchase: the money (fen) the growth was credited for — the order's paid amount net of the
    # refunds recorded when it completed; a later refund takes back in proportion to it
    Column("basis_fen", BigInteger),
    CheckConstraint("amount <> 0", name="non_zero"),
    CheckConstraint(
        "kind <> 'purchase' OR (basis_fen IS NOT NULL AND basis_fen >= 0)", name="purchase_basis"
    ),
    UniqueConstraint("program_id", "idem_key", name="uq_growth_entries_idem"),
)
Index(
    "ix_growth_entries_member",
    growth_entries.c.program_id,
    growth_entries.c.member_id,
    growth_entries.c.occurred_at,
)
Index("ix_growth_entries_order", growth_entries.c.program_id, growth_entries.c.order_id)

member_tiers = Table(
    "member_tiers",
    metadata,
    Column("program_id", String(ID), ForeignKey("programs.id"), primary_key=True),
    Column("member_id", String(ID), primary_key=True),
    Column("tier_id", String(ID), nullable=False),
    Column("reached_at", UTCDateTime(), nullable=False),
    Column("growth_total", BigInteger, nullable=False),
    Column("next_check_at", UTCDateTime()),
    Column("override_tier", String(ID)),
    Column("override_mode", String(8)),
    Column("override_ends_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint(
        "override_mode is null or override_mode in ('floor', 'fixed')", name="override_mode"
    ),
)
Index("ix_member_tiers_check", member_tiers.c.next_check_at)

tier_history = Table(
    "tier_history",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("from_tier", String(ID)),
    Column("to_tier", String(ID), nullable=False),
    Column("cause", String(24), nullable=False),
    Column("metric_value", BigInteger, nullable=False),
    Column("reason", String(300), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
Index(
    "ix_tier_history_member", tier_history.c.program_id, tier_history.c.member_id, tier_history.c.id
)

tier_gifts = Table(
    "tier_gifts",
    metadata,
    Column("program_id", String(ID), primary_key=True),
    Column("member_id", String(ID), primary_key=True),
    Column("tier_id", String(ID), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("granted_at", UTCDateTime(), nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("program_id", String(ID), nullable=False),
    Column("member_id", String(ID), nullable=False),
    Column("plan_id", String(ID), nullable=False),
    Column("purchase_id", String(ID), nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("benefit_used", Boolean, nullable=False),
    Column("reminded_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("program_id", "purchase_id", name="uq_subscriptions_purchase"),
    CheckConstraint("ends_at > starts_at", name="period"),
    CheckConstraint("status in ('active', 'refunded', 'expired')", name="status"),
)
Index(
    "ix_subscriptions_member",
    subscriptions.c.program_id,
    subscriptions.c.member_id,
    subscriptions.c.ends_at,
)
