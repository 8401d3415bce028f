"""How long a metadata value is, counted the way the provider's database counts it (pure functions).

RFC 7591 section 3.2.2: a value the server cannot take is ``invalid_client_metadata`` (``invalid_redirect_uri``
for a redirection URI), decided before anything is created. Python's ``len`` counts code points, which is what
PostgreSQL counts; other databases count differently, and a value longer than the column in *their* unit fails
inside the provider (Keycloak: "Uncaught server error" and a stack trace on every such request). So each column a
registration field lands in is described by its size and unit, and a value is measured in that unit:

- ``CHARACTERS``: code points (PostgreSQL ``VARCHAR``, MySQL/MariaDB ``utf8mb4``);
- ``UTF16``: UTF-16 code units, Java ``char``\\s (H2, Keycloak's dev database; SQL Server ``NVARCHAR``; Oracle
  ``NVARCHAR2``): a character outside the Basic Multilingual Plane (an emoji) counts 2;
- ``UTF8``: bytes of UTF-8 (Oracle ``VARCHAR2`` with byte semantics, the default; SQL Server ``VARCHAR`` with a
  UTF-8 collation; MySQL ``TEXT``): a non-ASCII character counts 2 to 4.

A provider that supports several databases declares the strictest unit among them (UTF-8 bytes >= UTF-16 code
units >= code points for every string).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class LengthUnit(Enum):
    """What a database column counts."""

    CHARACTERS = "characters"
    UTF16 = "UTF-16 code units"
    UTF8 = "bytes of UTF-8"

    def measure(self, value: str) -> int:
        if self is LengthUnit.UTF16:
            return len(value.encode("utf-16-le", "surrogatepass")) // 2
        if self is LengthUnit.UTF8:
            return len(value.encode("utf-8", "surrogatepass"))
        return len(value)

    def counting(self) -> str:
        """How characters count in this unit, for an error a client can act on."""
        if self is LengthUnit.UTF16:
            return "a character outside the Basic Multilingual Plane, such as an emoji, counts 2"
        if self is LengthUnit.UTF8:
            return "a non-ASCII character counts 2 to 4"
        return "each character counts 1"


@dataclass(frozen=True)
class StoredLength:
    """The longest value one provider column holds, in the unit that column counts."""

    maximum: int
    unit: LengthUnit
    column: str = ""
    """Where the provider stores it (documentation only: never shown to clients, it names internals)."""

    def excess(self, value: str) -> int | None:
        """The value's length in :attr:`unit` when it does not fit, else ``None``."""
        length = self.unit.measure(value)
        return length if length > self.maximum else None

    def refusal(self, field_name: str, length: int) -> str:
        """``error_description`` naming the field, its length and the limit, in the provider's unit."""
        return (
            f"{field_name}: {length} {self.unit.value}, longer than the {self.maximum} the authorization server "
            f"stores ({self.unit.counting()})"
        )
