"""Expected failures of particular provider releases: a known defect of that release, not of the deployment.

The conformance suite applies these when it knows the provider's version (``--provider-version``, or
:attr:`~gateway.conformance.runner.SuiteConfig.provider_version`): the cell becomes an expected failure whose reason
names the version, and a pass there is an ``XPASS`` (the release was misjudged, or the deployment works around it),
strict like the profiles' own expected failures. Each entry was observed in ``make matrix`` (README, "Supported
providers"); the releases outside the range pass the same cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import version_tuple


@dataclass(frozen=True)
class ReleaseDefect:
    provider: str
    below: tuple[int, ...]
    """The first release without the defect: versions below it have it."""
    row: str
    step: str
    reason: str
    """Why the cell fails there; ``{version}`` is replaced with the detected version."""

    def applies(self, provider: str | None, version: str | None) -> bool:
        found = version_tuple(version)
        return provider == self.provider and bool(found) and found < self.below


RELEASE_DEFECTS: tuple[ReleaseDefect, ...] = (
    ReleaseDefect(
        provider="keycloak",
        below=(25,),
        row="resource-audience-after-refresh",
        step="check",
        reason=(
            "Keycloak {version} (before 25.0) leaves the audience of the resource's optional client scope out of "
            "access tokens issued on a refresh, although the authorization request asked for that scope and the "
            "first token carries it; 25.0.6 and later keep it (make matrix)"
        ),
    ),
)


def release_defect(provider: str | None, version: str | None, row: str, step: str) -> str | None:
    """The reason ``row``/``step`` is expected to fail on ``provider`` at ``version``, or ``None``."""
    for defect in RELEASE_DEFECTS:
        if defect.row == row and defect.step == step and defect.applies(provider, version):
            return defect.reason.format(version=version)
    return None
