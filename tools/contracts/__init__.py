"""Tool contracts: the Pydantic input and output models every adapter of a tool shares."""
