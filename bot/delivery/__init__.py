"""Getting queued messages out: the sender drains the outbox per channel with a rate limit,
fairness across users, retries and at-most-once recovery."""
