"""Pure rules: nothing here does I/O or reads the clock."""
