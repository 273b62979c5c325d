"""Veivis: a conversation bot (SMS and Telegram) for young people with an activity duty at NAV;
the package map is in the README («How it is built»)."""
