"""Phone numbers: one stored form so customer service finds a member however it was typed.

Mainland mobile numbers are kept as their 11 digits (``+86 138-0013-8000`` → ``13800138000``);
other numbers keep a leading ``+`` and their digits. Phones are personal data: never log them,
show them masked (``138****8000``).
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")


def normalize_phone(raw: str) -> str | None:
    """The stored form of a phone number, or None if it is not one."""
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+86"):
        text = text[3:]
        if not _CN_MOBILE.fullmatch(text) and not text.startswith("0"):
            text = "0" + text  # a landline dialled from abroad drops its trunk 0: put it back
    elif text.startswith("86") and len(text) == 13:
        text = text[2:]
    if _CN_MOBILE.fullmatch(text):
        return text
    if text.startswith("+") and text[1:].isdigit() and 8 <= len(text) - 1 <= 15:
        return text
    if text.isdigit() and 7 <= len(text) <= 12:  # landlines and short store numbers
        return text
    return None


def mask_phone(phone: str) -> str:
    if len(phone) <= 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"
