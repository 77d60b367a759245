"""Middleware that keeps the request chain asynchronous.

WhiteNoise's middleware is synchronous only: in Django's chain it made every API request
hop into a thread for the two outermost middlewares and back onto the event loop for the
rest (two thread switches, and a new thread per request under ASGI). This wrapper looks
the path up in WhiteNoise's table on the loop and only serves files from a thread.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        if not iscoroutinefunction(get_response):
            raise TypeError("AsyncWhiteNoiseMiddleware needs an async chain below it")
        self.get_response = get_response
        self.static = WhiteNoiseMiddleware(get_response=get_response)
        markcoroutinefunction(self)

    async def __call__(self, request):
        static = self.static
        if static.autorefresh:  # development: files are looked up on disk per request
            found = await sync_to_async(static.find_file)(request.path_info)
        else:
            found = static.files.get(request.path_info)
        if found is not None:
            return await sync_to_async(static.serve)(found, request)
        return await self.get_response(request)
