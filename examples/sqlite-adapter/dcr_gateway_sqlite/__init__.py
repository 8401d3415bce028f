"""An example dcr-gateway adapter: OAuth clients in a SQLite database (see :mod:`.adapter`)."""
