"""Believable Chinese member profiles, drawn from a seeded random generator."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
)
GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳博文昊然轩哲睿诚"
GIVEN_FEMALE = (
    "芳娜敏静丽艳娟霞秀玲桂英华慧巧美淑惠珠翠雅芝玉萍红月彩春菊兰凤洁梅琳素云莲真欣怡婷雪"
)
NICKNAMES = (
    "小鱼儿",
    "快乐每一天",
    "追风少年",
    "吃货一枚",
    "阳光小屋",
    "晴天",
    "momo",
    "Lucky",
    "奶茶控",
    "数码控",
    "爱美丽",
    "宅家达人",
    "跑步的猫",
    "清风徐来",
    "向日葵",
    "Coco",
    "Kevin",
    "Tina",
)
REGIONS = (
    ("上海市", "浦东新区"),
    ("上海市", "徐汇区"),
    ("北京市", "朝阳区"),
    ("北京市", "海淀区"),
    ("广东省", "广州市"),
    ("广东省", "深圳市"),
    ("浙江省", "杭州市"),
    ("浙江省", "宁波市"),
    ("江苏省", "南京市"),
    ("江苏省", "苏州市"),
    ("四川省", "成都市"),
    ("湖北省", "武汉市"),
    ("陕西省", "西安市"),
    ("重庆市", "渝北区"),
    ("天津市", "南开区"),
    ("湖南省", "长沙市"),
    ("山东省", "青岛市"),
    ("福建省", "厦门市"),
    ("河南省", "郑州市"),
    ("辽宁省", "沈阳市"),
)
STREETS = ("人民路", "中山路", "解放路", "建设路", "和平路", "长江路", "科技园路", "世纪大道")
EDUCATION = (("高中", 2), ("大专", 3), ("本科", 5), ("硕士", 2), ("博士", 1))
OCCUPATIONS = (
    "软件工程师",
    "教师",
    "医生",
    "设计师",
    "销售",
    "财务",
    "学生",
    "公务员",
    "自由职业",
    "产品经理",
    "护士",
    "律师",
    "个体经营",
    "行政",
    "市场营销",
)
CHANNELS = (("app", 45), ("mini_program", 30), ("h5", 8), ("offline_store", 10), ("campaign", 7))
EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com")


@dataclass
class Person:
    member_id: str
    registered_at: datetime
    profile: dict[str, Any]
    channel: str
    inviter_id: str | None
    activity: float  # how busy this member is: a heavy tail of very active members
    home_store: str | None
    events: list[dict[str, Any]] = field(default_factory=list)


def weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    values = [value for value, _ in pairs]
    weights = [weight for _, weight in pairs]
    return rng.choices(values, weights=weights)[0]


def _phone(rng: random.Random, used: set[str]) -> str:
    while True:
        phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        if phone not in used:
            used.add(phone)
            return phone


def invent_person(
    rng: random.Random,
    index: int,
    registered_at: datetime,
    used_phones: set[str],
    earlier: list[str],
    stores: list[str],
) -> Person:
    female = rng.random() < 0.55
    given = GIVEN_FEMALE if female else GIVEN_MALE
    name = rng.choice(SURNAMES) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2, 2))))
    phone = _phone(rng, used_phones)
    province, city = rng.choice(REGIONS)
    age_days = rng.randint(18 * 365, 62 * 365)
    birthday = (registered_at - timedelta(days=age_days)).date()
    profile: dict[str, Any] = {
        "phone": phone,
        "name": name,
        "nickname": rng.choice(NICKNAMES) if rng.random() < 0.6 else name,
        "gender": "female" if female else "male",
        "birthday": date.isoformat(birthday),
        "region": f"{province}{city}",
    }
    if rng.random() < 0.4:
        profile["email"] = f"u{index:05d}@{rng.choice(EMAIL_DOMAINS)}"
    if rng.random() < 0.5:
        profile["education"] = weighted(rng, EDUCATION)
    if rng.random() < 0.5:
        profile["occupation"] = rng.choice(OCCUPATIONS)
    if rng.random() < 0.8:
        profile["addresses"] = [
            {
                "recipient": name,
                "phone": phone,
                "region": f"{province}{city}",
                "detail": f"{rng.choice(STREETS)}{rng.randint(1, 999)}号{rng.randint(1, 30)}栋",
                "is_default": True,
            }
        ]
    if rng.random() < 0.1:
        profile["invoice_titles"] = [
            {
                "kind": "company",
                "title": f"{city}{rng.choice(('科技', '贸易', '文化'))}有限公司",
                "tax_id": f"91{rng.randrange(10**16):016d}",
                "is_default": True,
            }
        ]
    inviter = rng.choice(earlier) if earlier and rng.random() < 0.12 else None
    activity = min(rng.paretovariate(1.6), 12.0)
    home = rng.choice(stores) if rng.random() < 0.7 else None
    return Person(
        member_id=f"u{index:06d}",
        registered_at=registered_at,
        profile=profile,
        channel=weighted(rng, CHANNELS),
        inviter_id=inviter,
        activity=activity,
        home_store=home,
    )
