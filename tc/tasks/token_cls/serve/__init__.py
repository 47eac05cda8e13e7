"""``tc serve``: an HTTP API (FastAPI + uvicorn) with micro-batching in front of one Predictor.

``command`` is the click command (imports nothing heavy at module level, so ``tc --help`` stays fast),
``app`` the ASGI app factory, ``request`` the request parser (pure: bytes in, a validated request or a
4xx out), ``documents`` the limits of a ``document`` request, ``batcher`` the asyncio micro-batcher.
"""
