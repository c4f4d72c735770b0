"""Sans-I/O protocol adapters, one module per exchange."""
