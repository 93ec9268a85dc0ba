"""The one place the framework loads the method plugins (the ``methods`` package, or any
package a user's suite names through it): every other framework module asks here, so the
framework never depends on a particular plugin."""

from __future__ import annotations

from methods import METHODS

__all__ = ["METHODS"]
