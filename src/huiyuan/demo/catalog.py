"""The demo's stores and what they sell (prices in fen)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    brand: str
    price: int
    virtual: bool = False


STORES = {
    "store-beauty": "花漾美妆旗舰店",
    "store-digital": "极客数码专营店",
    "store-fresh": "鲜生超市",
}

CATALOG: dict[str | None, tuple[Product, ...]] = {
    "store-beauty": (
        Product("B-1001", "玻尿酸补水面膜 10片", "美妆护肤", "花漾", 12900),
        Product("B-1002", "氨基酸洁面乳 120g", "美妆护肤", "花漾", 6900),
        Product("B-1003", "丝绒哑光口红", "彩妆", "Velvet", 19900),
        Product("B-1004", "防晒喷雾 SPF50", "美妆护肤", "SunDay", 9900),
        Product("B-1005", "香水小样礼盒", "香水", "Aroma", 29900),
        Product("B-1006", "美容护理到店券", "服务", "花漾", 5000, virtual=True),
    ),
    "store-digital": (
        Product("D-2001", "降噪蓝牙耳机", "数码", "声悦", 59900),
        Product("D-2002", "65W 氮化镓充电器", "数码配件", "极客", 12900),
        Product("D-2003", "机械键盘 87键", "电脑外设", "KeyPro", 39900),
        Product("D-2004", "智能手表 S3", "智能穿戴", "极客", 129900),
        Product("D-2005", "手机壳 磨砂", "数码配件", "极客", 3900),
        Product("D-2006", "延保服务 1年", "服务", "极客", 9900, virtual=True),
    ),
    "store-fresh": (
        Product("F-3001", "有机牛奶 1L×6", "乳品", "牧场", 6800),
        Product("F-3002", "智利车厘子 2斤", "水果", "鲜生", 15800),
        Product("F-3003", "五常大米 5kg", "粮油", "五常", 8900),
        Product("F-3004", "鲜鸡蛋 30枚", "蛋品", "鲜生", 3290),
        Product("F-3005", "三文鱼刺身 200g", "海鲜", "深海", 8800),
        Product("F-3006", "坚果礼盒", "零食", "果仁", 12800),
    ),
    None: (  # the platform's own (自营) goods
        Product("P-9001", "纯棉四件套", "家居", "自营", 29900),
        Product("P-9002", "不粘锅 28cm", "厨具", "自营", 15900),
        Product("P-9003", "儿童绘本 10册", "图书", "童趣", 9900),
        Product("P-9004", "视频会员月卡", "虚拟商品", "自营", 2500, virtual=True),
        Product("P-9005", "运动跑鞋", "运动户外", "疾风", 39900),
        Product("P-9006", "保温杯 500ml", "家居", "自营", 8900),
    ),
}

PLANS = (("plus-annual", 14900), ("plus-monthly", 1500))
