"""The client-type conformance suite: ``dcr-gateway conformance --issuer URL``.

Client profiles (data files in ``profiles/``) x steps (discovery at every location MCP clients probe, RFC 7591
registration or a Client ID Metadata Document, authorization code with PKCE S256 and an RFC 8707 ``resource``,
token, refresh, loopback port change), the RFC 8707 audience / ``invalid_target``, RFC 9207 ``iss`` and
``localhost`` cells, plus registrations and documents a safe server must refuse, run against any issuer: this
gateway, a provider's native registration endpoint, or a shim being replaced. See
:mod:`gateway.conformance.runner`.
"""

from gateway.conformance.login import LoginDriver, hydra_admin, keycloak_form
from gateway.conformance.report import Outcome, Report, render_text, to_json, to_junit
from gateway.conformance.runner import SuiteConfig, run_suite

__all__ = [
    "LoginDriver",
    "Outcome",
    "Report",
    "SuiteConfig",
    "hydra_admin",
    "keycloak_form",
    "render_text",
    "run_suite",
    "to_json",
    "to_junit",
]
