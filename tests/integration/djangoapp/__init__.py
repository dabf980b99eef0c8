"""A minimal Django project (no database, two views) for the Django instrumentation test."""
