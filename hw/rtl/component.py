"""The base of every tern RTL block: one :class:`hw.config.TernConfig`, checked before anything is
built, and the elaboration-time check that what a block builds matches the configuration."""

from __future__ import annotations

from amaranth.lib import wiring

from hw.config import TernConfig

__all__ = ["ConfigComponent"]


class ConfigComponent(wiring.Component):
    """Base of every block built for one :class:`hw.config.TernConfig` (kept as :attr:`config`).

    The arguments are checked in ``__new__``, before any Amaranth object exists, so a rejected
    block leaves no "created but never used" warning behind: the configuration must be a
    ``TernConfig`` (which validated itself), and a subclass with more parameters checks them in
    :meth:`check_args`."""

    def __new__(cls, config, *args, **kwargs):
        if not isinstance(config, TernConfig):
            raise TypeError(f"{cls.__name__}: config must be a hw.config.TernConfig, not {config!r}")
        cls.check_args(*args, **kwargs)
        return super().__new__(cls, src_loc_at=1)

    @classmethod
    def check_args(cls, *args, **kwargs):
        """Check the parameters after ``config`` (raise TypeError / ValueError); none by default."""

    def __init__(self, config: TernConfig, members: dict):
        self.config = config
        super().__init__(members)

    def check_built(self, fact: str, built):
        """At elaboration: raise unless what the block built (``built``) is ``config.<fact>``."""
        expected = getattr(self.config, fact)
        if built != expected:
            raise AssertionError(f"{type(self).__name__}: built {built} for {fact}, the configuration "
                                 f"says {expected}")
