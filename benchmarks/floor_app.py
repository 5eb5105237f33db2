"""The floor under any JSON service in FastAPI here: an endpoint that reads the whole body
and answers a constant, run by `serving_vs_mlflow.py --floor` with the same uvicorn settings
and bodies as the forecast service. No service that reads its input can do better."""

from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
ANSWER = b'{"results":[]}'


@app.get("/readyz")
async def ready() -> Response:
    return Response(ANSWER, media_type="application/json")


@app.post("/v1/forecast")
async def forecast(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")
