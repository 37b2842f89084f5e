"""The cache: Redis in production, an in-process dict by default, a small local tier in front.

See :mod:`app.cache.base` for the contract every implementation keeps.
"""

from app.cache.base import Cache
from app.cache.local import LocalCache
from app.cache.redis_cache import RedisCache
from app.cache.tiered import TieredCache, make_cache

__all__ = ["Cache", "LocalCache", "RedisCache", "TieredCache", "make_cache"]
