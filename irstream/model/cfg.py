"""What every model config shares: the input size multiple of a U-Net with len(channels)
stages, and a plain-dict form for the weights' card (the card stores it, loading rebuilds it)."""

from __future__ import annotations

import dataclasses


class UNetCfg:
    """Mixin for a frozen dataclass with `channels`, one width per stage (the first at full
    resolution, each next one at half)."""

    channels: tuple[int, ...]

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (pad, then crop back)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)
