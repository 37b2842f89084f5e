"""Customer tokens for browsers and apps: POST /tokens mints one for a backend that asks."""
