"""The contact history: every decision shown and every piece of feedback, on SQLite or PostgreSQL."""
