"""The HTTP service: ticket API, approvals, escalations, console, and the workers behind them."""
