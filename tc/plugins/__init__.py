"""tc's plugin system: pluggy hooks (``hookspecs``) and the loader (``manager``)."""

from tc.plugins.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
