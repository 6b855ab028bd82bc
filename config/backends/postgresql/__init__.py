"""Django's PostgreSQL backend with psycopg's C timestamp loader (``config.backends.postgresql``)."""
