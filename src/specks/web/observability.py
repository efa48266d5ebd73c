"""(being written)"""

from __future__ import annotations

from flask import Flask

from ..config import Settings


def register_observability(app: Flask, settings: Settings) -> None:
    return None
