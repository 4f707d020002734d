"""One module per stage; ``load(stage)`` gives its code checked against the contract."""

from cubeinstall.stages.contract import StageCode, load

__all__ = ["StageCode", "load"]
