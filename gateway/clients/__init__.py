"""Client hygiene and migration: ``dcr-gateway clients list | show | delete | gc | adopt``.

MCP clients re-register on every connect (RFC 7591 registrations pile up), and teams moving from a hand-written
registration shim bring clients the gateway did not create. The gateway keeps no database, so these operations
read and change the provider's own client records through the adapter: :mod:`gateway.clients.operations`
(decisions as pure functions, provider I/O with bounded concurrency) and :mod:`gateway.clients.cli`.
"""
