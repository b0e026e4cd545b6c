"""The demo's program documents: the platform's JD-like points, and each store's own."""

from __future__ import annotations

from typing import Any

PLATFORM: dict[str, Any] = {
    "points": {
        "name": {"zh": "会员积分", "en": "points"},
        "value_fen": 1,
        "earning": [
            {"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1},
            {"kind": "order_threshold", "id": "big-order", "threshold_fen": 100000, "points": 200},
            {
                "kind": "per_amount",
                "id": "first-orders",
                "per_fen": 100,
                "points": 1,
                "conditions": {"first_n_orders": 2},
            },
            {"kind": "fixed", "id": "welcome", "trigger": "registration", "points": 100},
            {"kind": "fixed", "id": "sign-in", "trigger": "sign_in", "points": 5},
            {
                "kind": "fixed",
                "id": "review",
                "trigger": "review",
                "points": 10,
                "caps": {"per_day": 30},
            },
            {
                "kind": "fixed",
                "id": "photo-review",
                "trigger": "photo_review",
                "points": 20,
                "caps": {"per_day": 60},
            },
            {
                "kind": "fixed",
                "id": "share",
                "trigger": "share",
                "points": 2,
                "caps": {"per_day": 6},
            },
        ],
        "expiry": {"mode": "calendar", "years_after": 1, "month": 12, "day": 31},
        "pending": {"release": "on_completion"},
        "redemption": {"fen_per_point": 1, "min_unit": 100, "max_order_share": "0.5"},
        "negative_balance": "debt",
        "mall": [
            {"id": "coupon-10", "name": {"zh": "10元无门槛券", "en": "¥10 coupon"}, "points": 1000},
            {
                "id": "thermos",
                "name": {"zh": "保温杯", "en": "thermos"},
                "points": 5000,
                "stock": 200,
                "per_member_limit": 1,
            },
            {
                "id": "shipping-30d",
                "name": {"zh": "30天包邮卡", "en": "30 days of free shipping"},
                "points": 2000,
                "benefit": {"id": "free-shipping", "days": 30},
            },
            {
                "id": "lounge-pass",
                "name": {"zh": "机场贵宾厅", "en": "airport lounge pass"},
                "points": 8000,
                "tiers": ["gold", "diamond"],
            },
        ],
    },
    "wallet": {
        "recharge_bonuses": [
            {"min_fen": 50000, "bonus_fen": 5000},
            {"min_fen": 100000, "bonus_fen": 12000},
        ],
        "spend_order": "principal_first",
    },
    "growth": {
        "rules": [
            {"kind": "login", "id": "daily-login", "points": 2, "skip_lowest_tier": True},
            {
                "kind": "purchase",
                "id": "purchase",
                "per_fen": 100,
                "points": 1,
                "coefficients": {"gold": "1.2", "diamond": "1.5"},
            },
            {"kind": "review", "id": "review", "points": 20, "min_item_fen": 2000},
            {"kind": "photo_review", "id": "photo-review", "points": 20, "first_n": 5},
            {"kind": "share", "id": "share", "points": 1, "per_day": 3},
            {"kind": "sign_in", "id": "sign-in", "points": 1},
            {"kind": "registration", "id": "welcome", "points": 50},
            {"kind": "profile_completion", "id": "profile", "points": 30},
        ],
    },
    "benefits": [
        {
            "id": "discount-95",
            "kind": "percent_discount",
            "name": {"zh": "95折", "en": "5% off"},
            "percent_off": "5",
        },
        {
            "id": "discount-90",
            "kind": "percent_discount",
            "name": {"zh": "9折", "en": "10% off"},
            "percent_off": "10",
        },
        {
            "id": "points-x2",
            "kind": "points_multiplier",
            "name": {"zh": "双倍积分", "en": "double points"},
            "multiplier": "2",
        },
        {
            "id": "free-shipping",
            "kind": "free_shipping",
            "name": {"zh": "每月免邮 5 次", "en": "5 free deliveries a month"},
            "monthly_quota": 5,
        },
        {
            "id": "priority-service",
            "kind": "priority_service",
            "name": {"zh": "专属客服", "en": "priority service line"},
        },
        {
            "id": "birthday-gift",
            "kind": "birthday_gift",
            "name": {"zh": "生日礼包", "en": "birthday gift"},
            "gift_points": 200,
        },
    ],
    "tiers": {
        "metric": "growth_window",
        "window_days": 365,
        "tiers": [
            {"id": "registered", "name": {"zh": "注册会员", "en": "Registered"}, "threshold": 0},
            {
                "id": "bronze",
                "name": {"zh": "铜牌会员", "en": "Bronze"},
                "threshold": 500,
                "upgrade_gift_points": 50,
            },
            {
                "id": "silver",
                "name": {"zh": "银牌会员", "en": "Silver"},
                "threshold": 2000,
                "upgrade_gift_points": 100,
                "benefits": ["birthday-gift"],
            },
            {
                "id": "gold",
                "name": {"zh": "金牌会员", "en": "Gold"},
                "threshold": 6000,
                "retention": 5000,
                "upgrade_gift_points": 300,
                "benefits": ["discount-95", "birthday-gift"],
            },
            {
                "id": "diamond",
                "name": {"zh": "钻石会员", "en": "Diamond"},
                "threshold": 15000,
                "retention": 12000,
                "upgrade_gift_points": 800,
                "benefits": ["discount-95", "birthday-gift", "priority-service"],
            },
        ],
        "downgrade": {"checkpoint": "monthly", "min_stay_days": 30, "drop": "supported"},
        "gift_period_days": 365,
    },
    "plans": [
        {
            "id": "plus-annual",
            "name": {"zh": "PLUS 年卡", "en": "PLUS annual"},
            "price_fen": 14900,
            "period": "annual",
            "benefits": ["discount-90", "points-x2", "free-shipping"],
        },
        {
            "id": "plus-monthly",
            "name": {"zh": "PLUS 月卡", "en": "PLUS monthly"},
            "price_fen": 1500,
            "period": "monthly",
            "benefits": ["discount-90", "points-x2", "free-shipping"],
        },
    ],
}

STORES: dict[str, dict[str, Any]] = {
    "store-beauty": {
        "tiers": {  # a retailer's ladder on spend, with no downgrade at all
            "metric": "spend_window",
            "window_days": 3650,
            "tiers": [
                {"id": "fan", "name": {"zh": "花粉", "en": "Fan"}, "threshold": 0},
                {"id": "vip", "name": {"zh": "VIP", "en": "VIP"}, "threshold": 100000},
                {"id": "svip", "name": {"zh": "SVIP", "en": "SVIP"}, "threshold": 500000},
            ],
        },
        "points": {
            "name": {"zh": "花漾积分", "en": "Bloom points"},
            "earning": [
                {
                    "kind": "per_amount",
                    "id": "base",
                    "per_fen": 100,
                    "points": 2,
                    "conditions": {"categories": ["美妆护肤", "彩妆", "香水"]},
                },
            ],
            "expiry": {"mode": "rolling", "days": 365},
        },
    },
    "store-digital": {
        "points": {
            "earning": [
                {
                    "kind": "per_amount",
                    "id": "base",
                    "per_fen": 1000,
                    "points": 1,
                    "caps": {"per_order": 500},
                },
            ],
            "expiry": {"mode": "rolling", "days": 730},
        },
    },
    "store-fresh": {
        "tiers": {  # a stored-value ladder (储值会员): cumulative recharge decides the tier
            "metric": "recharge_total",
            "tiers": [
                {"id": "member", "name": {"zh": "普通会员", "en": "Member"}, "threshold": 0},
                {
                    "id": "card-500",
                    "name": {"zh": "储值卡会员", "en": "Card member"},
                    "threshold": 50000,
                },
                {
                    "id": "card-2000",
                    "name": {"zh": "至尊储值会员", "en": "Prime card member"},
                    "threshold": 200000,
                },
            ],
        },
        "points": {
            "earning": [{"kind": "per_amount", "id": "base", "per_fen": 100, "points": 1}],
            "expiry": {"mode": "rolling", "days": 180},
            "pending": {"release": "after_return_window", "return_window_days": 2},
        },
        "wallet": {
            "recharge_bonuses": [
                {"min_fen": 20000, "bonus_fen": 1000},
                {"min_fen": 50000, "bonus_fen": 3000},
            ]
        },
    },
}
