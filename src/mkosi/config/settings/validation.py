"""Settings of the [Validation] section."""

from __future__ import annotations

from mkosi.config.settings.base import Setting

SETTINGS: list[Setting] = []
