"""Backstage gate scanner: signed passes checked offline at a backstage door."""

__version__ = "0.1.0"
