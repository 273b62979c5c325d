"""Getting queued messages out: the sender drains the outbox per channel with a rate limit,
fairness across users and retries, claims a row only as its rate slot comes, and settles a
send in doubt (asking the provider where it can be asked) before sending it again."""
