"""The web app: projects, keys and billed write counts in a browser."""

from eventbunker.web.routes import template_config, web_handlers

__all__ = ["template_config", "web_handlers"]
