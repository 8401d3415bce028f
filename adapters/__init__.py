"""Provider adapters: the pluggable layer between the gateway and a provider's admin API.

See :mod:`adapters.base` for the interface and :mod:`adapters.registry` for how adapters are found.
"""
