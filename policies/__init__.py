"""Policies: rules checked before any step runs. They block; they never race the action."""
