"""What the gateway ships for testing adapters: the adapter contract suite (:mod:`.adapter_contract`) and the
registration bodies real MCP clients send (:mod:`.mcp_client_bodies`). Needs the ``test`` tools (pytest,
pytest-asyncio); the gateway itself never imports this package."""
