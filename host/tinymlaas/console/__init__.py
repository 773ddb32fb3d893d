"""The service console: server-rendered pages (fleet, device, models, deployments, audit, tokens) and the few
JSON routes only the console needs (telemetry, live deployment progress), on the service's aiohttp app.

    api = build_api(svc.server, svc, auth=True)
    console_routes(api, svc)

Everything the pages load is served here (templates/, static/): no CDN, no JS toolchain.
"""

from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
import jinja2

from . import charts
from .pages import ago, iso, page_routes, percent
from .routes import console_api_routes

HERE = Path(__file__).resolve().parent


def console_routes(api, svc):
    env = aiohttp_jinja2.setup(api.app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.filters.update(seg=lambda v: quote(str(v), safe=""),     # one URL path segment: "/" too is escaped
                       bytes=lambda v: charts.human(v, "B"), human=charts.human, pct=percent, ago=ago, iso=iso)
    api.static("/console/static", HERE / "static")
    page_routes(api, svc)
    console_api_routes(api, svc)
    return api
