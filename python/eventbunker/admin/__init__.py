"""Administration: projects and their API keys."""
