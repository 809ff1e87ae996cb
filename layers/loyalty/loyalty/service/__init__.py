"""Use cases: each reads what it must, asks the domain what changes, and writes it in one transaction."""
