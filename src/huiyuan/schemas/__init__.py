"""The integration contract: what callers send and get back, validated with Pydantic."""
