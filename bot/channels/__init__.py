"""Channel adapters: each turns a provider's update into an Inbound and sends outbox rows."""
