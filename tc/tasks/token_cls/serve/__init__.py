"""``tc serve``: an HTTP API (FastAPI + uvicorn) with micro-batching in front of one Predictor.

``command`` is the click command (imports nothing heavy at module level, so ``tc --help`` stays fast),
``app`` the ASGI app factory and request validation, ``batcher`` the asyncio micro-batcher.
"""
