"""A response whose JSON was rendered once and cached as bytes (the reports of `holdings.valuation_api`).

Caching the rendered bytes rather than the data spares every hit the unpickling of hundreds of rows and their
rendering to JSON again, which cost more than the rest of a cached request. The bytes are what DRF's
`JSONRenderer` writes for the data; a client that asks for plain JSON gets them as they are, and any other
(the browsable API, `?format=api`, an `indent` parameter) gets the data decoded and rendered as usual.
"""

import json
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

_RENDERER = JSONRenderer()


def render_json(data: Any) -> bytes:
    """The bytes a `JSONRenderer` response writes for `data` (no indent)."""
    return _RENDERER.render(data)


class RenderedJSONResponse(Response):
    _data: Any

    def __init__(self, content: bytes, **kwargs: Any) -> None:
        self.json_bytes = content
        super().__init__(None, **kwargs)

    @property  # type: ignore[override]
    def data(self) -> Any:
        """The data, decoded only when something reads it (a renderer other than plain JSON, a test)."""
        if self._data is None:
            self._data = json.loads(self.json_bytes)
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value

    @property
    def rendered_content(self) -> Any:  # bytes, as DRF's (the stubs say str)
        renderer = getattr(self, "accepted_renderer", None)
        context = getattr(self, "renderer_context", None)
        plain = isinstance(renderer, JSONRenderer) and type(renderer) is JSONRenderer and self.content_type is None
        if plain and renderer.get_indent(self.accepted_media_type, context or {}) is None:  # type: ignore[union-attr]
            self["Content-Type"] = renderer.media_type  # type: ignore[union-attr]  # JSON: no charset parameter
            return self.json_bytes
        return super().rendered_content
