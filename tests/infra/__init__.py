"""Real infrastructure for the test suite: Postgres servers, TLS, PgBouncer.

Nothing here is mocked: each helper starts or finds the real thing. Tests that
need a part this machine lacks skip with a reason that says how to install it,
unless ``SAFE_MIGRATE_REQUIRE_ALL=1`` (set by ``.ci/run``) turns that skip into
a failure.
"""
