"""The HTTP face (FastAPI): parses requests, calls services, maps their refusals to problems."""
