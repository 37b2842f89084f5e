"""Outbound webhooks: subscriptions to customer changes, their outbox and its dispatcher."""
