"""Phones are stored in one form so customer service finds a member however it was typed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.domain.phone import mask_phone, normalize_phone


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138-0013-8000",
        "+86 138 0013 8000",
        "+8613800138000",
        "008613800138000",
        "0086 138 0013 8000",
        "8613800138000",
        "86 138 0013 8000",
        "(+86) 138.0013.8000",
        "  13800138000  ",
    ],
)
def test_every_way_of_typing_a_mainland_mobile_is_one_number(typed):
    # when a mainland mobile is typed with a country code, 00 prefix, spaces or dashes
    # then it is stored as its 11 digits
    assert normalize_phone(typed) == "13800138000"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("001 415 555 2671", "+14155552671"),
        ("+852 9123 4567", "+85291234567"),
        ("00852-9123-4567", "+85291234567"),
        ("021-6212-3456", "02162123456"),
        ("400 820 8820", "4008208820"),
    ],
)
def test_foreign_numbers_keep_their_plus_and_landlines_their_digits(typed, stored):
    # when a foreign number or a landline is typed with separators
    # then the separators go and a foreign number keeps its leading plus
    assert normalize_phone(typed) == stored


@pytest.mark.parametrize(
    "typed",
    ["", "   ", "abc", "12345", "+86 123", "138-0013-800x", "+1 415", "++8613800138000", "1" * 16],
)
def test_what_is_not_a_phone_number_is_refused(typed):
    # when something that is not a phone number is offered
    # then there is no stored form for it
    assert normalize_phone(typed) is None


def test_a_phone_is_shown_masked():
    # given stored phones
    # then only the first three and last four digits show
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("+14155552671") == "+14****2671"
    # and a short number shows nothing at all
    assert mask_phone("1234567") == "*******"
    assert mask_phone("") == ""


def test_a_masked_phone_never_contains_the_middle_digits():
    # given a mobile number
    phone = normalize_phone("+86 139-1234-5678")
    assert phone == "13912345678"
    # when it is masked
    masked = mask_phone(phone)
    # then the middle four digits are hidden
    assert "1234" not in masked
    assert masked == "139****5678"


mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
separators = st.sampled_from(["", " ", "-", ".", " - "])
prefixes = st.sampled_from(["", "+86", "+86 ", "0086", "0086 ", "86", "(+86) "])


@given(mobiles, prefixes, separators)
def test_any_written_form_of_a_mobile_finds_the_same_member(mobile, prefix, sep):
    # given a mobile written with any prefix and separator between its 3-4-4 groups
    typed = f"{prefix}{mobile[:3]}{sep}{mobile[3:7]}{sep}{mobile[7:]}"
    # when it is normalised
    stored = normalize_phone(typed)
    # then it is the bare 11 digits, and normalising again changes nothing
    assert stored == mobile
    assert normalize_phone(stored) == stored
