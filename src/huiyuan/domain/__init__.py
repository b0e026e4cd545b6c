"""Pure business rules. Imports only the standard library: it decides, it does not store."""
