"""Safe, exactly-once database migrations for Flask on real production Postgres.

Behind PgBouncer, Supavisor, Neon or RDS Proxy connections drop mid-migration
and several instances boot at once; this package applies every migration
exactly once anyway. See the README for the guide.
"""

from __future__ import annotations

from .classify import Transience
from .errors import BadInputError
from .errors import ChecksumDriftError
from .errors import ConfigError
from .errors import MigrationError
from .errors import MigrationSourceError
from .errors import OutOfOrderError
from .errors import RetriesExhausted
from .errors import SafeMigrateError
from .executor import Attempt
from .executor import ExecuteResult
from .executor import RetryPolicy
from .executor import execute_with_retry
from .executor import run_with_retry
from .extension import SafeMigrate

__version__ = "0.1.0.dev0"

__all__ = [
    "Attempt",
    "BadInputError",
    "ChecksumDriftError",
    "ConfigError",
    "ExecuteResult",
    "MigrationError",
    "MigrationSourceError",
    "OutOfOrderError",
    "RetriesExhausted",
    "RetryPolicy",
    "SafeMigrate",
    "SafeMigrateError",
    "Transience",
    "execute_with_retry",
    "run_with_retry",
]
