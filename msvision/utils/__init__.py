"""Small shared helpers and constants (ModelScope-compatible names)."""
