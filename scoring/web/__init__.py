"""The dashboard: FastAPI + Jinja2 pages and a JSON API over the figures and reports of ``scoring``."""
