"""The project's database backends: Django's, with what the agent's hot paths need changed."""
