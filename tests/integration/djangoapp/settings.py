"""Settings for the test project: no database, no apps, only what a request needs."""

SECRET_KEY = "otel-dd-bridge-tests-only"  # noqa: S105 - a test project, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.integration.djangoapp.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None  # keep Django from touching the test run's logging
