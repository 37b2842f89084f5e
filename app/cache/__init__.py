"""The cache: Redis in production, an in-process dict by default, a small local tier in front."""

from app.cache.base import Cache, LocalCache, RedisCache, TieredCache, make_cache

__all__ = ["Cache", "LocalCache", "RedisCache", "TieredCache", "make_cache"]
