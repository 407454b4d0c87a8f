"""The HTTP job API (``sonic-runner serve``): FastAPI routes over the job store.

``settings``: what a deployment configures; ``validation``: every check a request passes
before anything is stored; ``submit``: turning a valid request into a stored job;
``local_worker``: the in-process worker of the embedded default; ``app``: the routes.
"""
