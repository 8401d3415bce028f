"""Development and test tooling: real Hydra/Keycloak processes, the local stack, headless logins.

Not used by the gateway at run time. ``process`` spawns and stops services, ``providers`` starts Hydra,
Keycloak, the dev login app and gateways, ``stack`` is ``make stack-up/stack-down/run``, ``login`` walks
authorization-code flows without a browser, ``login_consent`` is the DEVELOPMENT-ONLY Hydra login app.
"""
