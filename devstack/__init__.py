"""Development and test tooling, never installed (the wheel and the production image hold only ``gateway`` and
``adapters``): real Hydra/Keycloak processes, the local stack, the development login app.

``process`` spawns and stops services, ``providers`` starts Hydra, Keycloak, the dev login app and gateways,
``stack`` is ``make stack-up/stack-down/run``, ``containers`` runs the providers through testcontainers,
``login_consent`` is the DEVELOPMENT-ONLY Hydra login app. The headless login drivers the shipped conformance
command needs live in :mod:`gateway.conformance.headless`.
"""
