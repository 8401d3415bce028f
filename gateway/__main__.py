"""``python -m gateway`` runs the ``dcr-gateway`` command."""

from gateway.cli import main

raise SystemExit(main())
