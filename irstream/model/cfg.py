"""What every model config shares: a plain-dict form for the weights' card (the card stores
it, loading rebuilds it), and for U-Nets the input size multiple of len(channels) stages."""

from __future__ import annotations

import dataclasses


class ArchCfg:
    """Mixin for a frozen dataclass of a model's settings: to and from the card's dict, where
    a key the dataclass lacks is refused (weights from another model or version)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**d)


class UNetCfg(ArchCfg):
    """Mixin for a model config with `channels`, one width per stage (the first at full
    resolution, each next one at half)."""

    channels: tuple[int, ...]

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (pad, then crop back)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return super().from_dict(d)
