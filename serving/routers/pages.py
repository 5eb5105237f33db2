"""Pages for people: a sensor's forecast, the list of sensors, and the sign-in that lets a
browser in. A browser cannot send a bearer header, so signing in with the token sets a
session cookie (`deps.session_value`: HttpOnly, SameSite=Strict) that the pages and the
drift reports accept; the JSON API still wants the header."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from aq_assets.ml.air_quality import SCALES
from serving.champion import LoadedModel
from serving.deps import SESSION_COOKIE, ServiceDep, session_value, signed_in
from serving.errors import ApiError
from serving.page import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, chart, templates
from serving.snapshot import OnlineSnapshot
from serving.state import ServingState

router = APIRouter(tags=["pages"])

LABELS = {"pm25": "PM2.5", "pm10": "PM10", "pm1": "PM1", "o3": "O₃", "no2": "NO₂"}
STALE_HOURS = 48  # a daily ingest of complete days leaves the data 24-48 hours behind
SESSION_DAYS = 7
HTML: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}}}}


def _number(value: float | None) -> str:
    """A concentration as the page shows it: one decimal (µg/m³), or three significant
    digits below 1 (gases in ppm: 0.0321)."""
    if value is None:
        return "—"
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _age(hours: float) -> str:
    """How old the data is, as a person says it: hours up to two days, then days."""
    return f"{hours:.0f} h" if hours < STALE_HOURS else f"{hours / 24:,.0f} days"


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates().get_template(name).render(**context), status_code=status)


def _local(path: str) -> str:
    """`path` if it stays on this site, else "/": never an open redirect."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse, responses=HTML)
async def login_form(next: Annotated[str, Query(max_length=200)] = "/") -> HTMLResponse:
    """The sign-in form: the service's token, once, for a session cookie."""
    return _page("login.html", next=_local(next), error=None)


@router.post("/login", response_class=HTMLResponse, responses=HTML)
async def login(request: Request, service: ServiceDep) -> Response:
    """Check the token of the form; a session cookie and back to the page asked for, or the
    form again with what was wrong."""
    form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0].strip()
    target = _local((form.get("next") or ["/"])[0])
    expected = service.settings.token()
    if expected is not None and session_value(given.encode()) != session_value(expected):
        return _page("login.html", 401, next=target, error="That is not the service's token.")
    response = RedirectResponse(target, status_code=303)
    if expected is not None:
        response.set_cookie(
            SESSION_COOKIE,
            session_value(expected),
            max_age=SESSION_DAYS * 86400,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.post("/logout", responses={303: {"description": "Signed out, to the sign-in form."}})
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _problem(status: int, message: str) -> HTMLResponse:
    """A page that says what went wrong (a person reads it, not a client: not JSON)."""
    titles = {404: "Not found", 503: "Not ready yet"}
    return _page("error.html", status, title=titles.get(status, "Error"), message=message)


def _served(
    service: ServingState, request: Request
) -> Response | tuple[LoadedModel, OnlineSnapshot]:
    """What a page draws from (the model and the snapshot), or the way to sign in first;
    a 503 page while either is missing."""
    if not signed_in(service, request):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    model, snapshot = service.model, service.snapshot
    if model is None or snapshot is None:
        return _problem(503, "No model or online_features snapshot loaded yet.")
    return model, snapshot


@router.get("/", response_class=HTMLResponse, responses=HTML)
async def sensors(request: Request, service: ServiceDep) -> Response:
    """The sensors the service forecasts from its snapshot, each linking to its page."""
    served = _served(service, request)
    if isinstance(served, Response):
        return served
    model, snapshot = served
    places = {
        sensor_id: snapshot.place_of(sensor_id)
        for sensor_id, series in snapshot.history.sensors.items()
        if series.parameter == model.spec.parameter
    }
    return _page(
        "sensors.html",
        # by place, then id: a person looks for a town's name
        sensors=sorted(places.items(), key=lambda item: (item[1] is None, item[1] or "", item[0])),
        parameter_label=LABELS.get(model.spec.parameter, model.spec.parameter),
    )


@router.get("/sensors/{sensor_id}", response_class=HTMLResponse, responses=HTML)
async def sensor_page(
    sensor_id: Annotated[int, Path(ge=0, le=2**63 - 1)], request: Request, service: ServiceDep
) -> Response:
    """A sensor's forecast page: the last three days of readings, the median of the next
    hours with its 80% and 90% bands over the AQI colours, and hour by hour the forecast, its
    ranges, its category and the chance of exceeding each threshold. The numbers are GET
    /v1/sensors/{id}/forecast's."""
    served = _served(service, request)
    if isinstance(served, Response):
        return served
    model, snapshot = served
    try:
        answer = msgspec.json.decode(service.sensor_answers.get(model, snapshot, sensor_id))
    except ApiError as problem:  # an unknown sensor, as the API says it
        return _problem(problem.status, problem.msg)
    parameter = model.spec.parameter
    last = answer.get("last_reading_utc")
    age = (
        (
            dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last.replace("Z", "+00:00"))
        ).total_seconds()
        / 3600
        - 1
        if last
        else None
    )
    scale = SCALES.get(parameter)
    return _page(
        "sensor.html",
        a=answer,
        place=snapshot.place_of(sensor_id),
        location_id=snapshot.history.sensors[sensor_id].location_id,
        chart=chart(answer, snapshot.history.sensors[sensor_id].target, parameter),
        parameter_label=LABELS.get(parameter, parameter),
        units=answer.get("units") or "",
        thresholds=model.thresholds,
        colours={c.name: c.colour for c in scale[0]} if scale else {},
        kind="baseline" if model.forecaster.is_baseline else "trained",
        age=None if age is None else _age(age),
        stale=age is not None and age > STALE_HOURS,
        signed_in=service.settings.token() is not None,
        number=_number,
        percent=lambda p: "—" if p is None else f"{p:.0%}",
        when=lambda iso: "—" if iso is None else iso[:16].replace("T", " ") + " UTC",
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=RIGHT,
        top=TOP,
        bottom=BOTTOM,
    )
