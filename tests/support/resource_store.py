"""A resource getter over a dict, for the CDH's tests; it records every URI asked for."""

from __future__ import annotations

from veritee.guest.cdh_errors import ResourceNotFound


class Store:
    """``Store({"kbs:///a/b/c": b"..."})`` is a getter; ``asked`` lists the URIs in order."""

    def __init__(self, resources: dict[str, bytes]) -> None:
        self.resources = resources
        self.asked: list[str] = []

    def __call__(self, uri: str) -> bytes:
        self.asked.append(uri)
        try:
            return self.resources[uri]
        except KeyError:
            raise ResourceNotFound(f"{uri}: no such resource") from None
