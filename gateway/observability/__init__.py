"""Observability: Prometheus metrics (:mod:`.metrics`), the audit log (:mod:`.audit`), the provider admin calls'
instrumentation (:mod:`.adapter`) and the management listener's app (:mod:`.management`).

Metrics live in one :class:`prometheus_client.CollectorRegistry` per gateway app, never the process-global one,
so two apps in one process (tests) do not share counts. Label values come from fixed sets or from configuration
(issuers), never from requests (no client ids, paths or user agents).
"""
