"""Abuse limits for open registration (RFC 7591 section 3 lets anyone register; section 5 leaves abuse to the
server): per-source and global rate limits (429, RFC 6585 section 4) and a quota of managed clients per issuer.

- :mod:`gateway.limits.settings`: the knobs (``Settings.limits``, ``DCR_LIMITS__*``).
- :mod:`gateway.limits.store`: windowed counters, in memory or shared through Redis.
- :mod:`gateway.limits.ratelimit`: which source a request is from, and the 429.
- :mod:`gateway.limits.quota`: the managed-client count per issuer, and the 403.
- :mod:`gateway.limits.guard`: all of it as one object for the app (hooks for RFC 7592 included).
"""
