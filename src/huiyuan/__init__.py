"""Huiyuan (会员): a membership and loyalty engine for e-commerce."""

__version__ = "0.1.0"
