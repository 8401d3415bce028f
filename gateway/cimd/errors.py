"""The one error of :mod:`gateway.cimd`: a client ID metadata document the gateway will not use.

draft-ietf-oauth-client-id-metadata-document section 4 (-01 section 4.4): "If fetching the metadata document
fails, the authorization server SHOULD abort the authorization request." The front door answers the request
with :attr:`DocumentRefused.reason`, so the reason is written for the client's developer: one line, naming
exactly what was wrong; never a stack trace, never an address the gateway resolved or connected to.
"""

from __future__ import annotations

from typing import Literal

Stage = Literal["url", "policy", "fetch", "document"]
"""Where the document was refused: the ``client_id`` URL's grammar (section 3), the deployment's host policy or
the special-use address rule (section 6.5 of -01), the HTTP fetch (section 4), or the document's content
(section 4.1)."""


class DocumentRefused(Exception):
    """A client ID metadata document refused at :attr:`stage`, for :attr:`reason`."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage: Stage = stage
        self.reason = _one_line(reason)

    def __repr__(self) -> str:
        return f"DocumentRefused({self.stage!r}, {self.reason!r})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def show(value: object, limit: int = 80) -> str:
    """``value`` for a reason: ``repr`` (so control characters are escaped, the reason stays one line),
    shortened to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
