"""conveyor over HTTP: the REST API, the dashboard, and the bearer tokens every door needs.

Needs the ``web`` extra (``pip install 'conveyor[web]'``): FastAPI, uvicorn and Jinja2.
"""
