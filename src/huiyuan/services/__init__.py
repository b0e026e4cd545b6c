"""Use cases. Each change is one function owning one unit of work; faces only parse and call."""
