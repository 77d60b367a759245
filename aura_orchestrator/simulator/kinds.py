"""The provider kinds the fake upstream speaks, keyed by their adapters' declarations.

A new provider kind (providers/registry.py) gets its fake here: a module like
`openai_compat.py` whose `SHAPE` names the adapter's spec, added to the tuple below.
"""

from __future__ import annotations

from . import anthropic, openai_compat
from .wire import WireShape

SHAPES: dict[str, WireShape] = {
    shape.spec.kind: shape for shape in (openai_compat.SHAPE, anthropic.SHAPE)
}
BY_PATH: dict[str, WireShape] = {shape.path: shape for shape in SHAPES.values()}
COMPLETION_PATHS = tuple(BY_PATH)
