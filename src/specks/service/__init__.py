"""One process serving models: the door every front-end calls, and what it needs (slots, limits, metrics)."""
