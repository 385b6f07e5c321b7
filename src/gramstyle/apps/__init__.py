"""Front doors: thin adapters over the core (settings from `Settings`, progress from events, runs in a session)."""
