"""Custom integrations: sockbridge (this package exists for the tests and type checks)."""
