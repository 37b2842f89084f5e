"""HTTP route of customer tokens."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import SettingsDep, TokenVerifierDep, WriteKey
from app.tokens import service
from app.tokens.schemas import TokenIn, TokenOut

router = APIRouter(tags=["tokens"])


@router.post("/tokens", dependencies=[WriteKey])
async def create_token(
    data: TokenIn, verifier: TokenVerifierDep, settings: SettingsDep
) -> TokenOut:
    """Mint a short-lived token bound to one customer (or visitor) for their browser or app."""
    return service.issue(verifier, data, settings)
