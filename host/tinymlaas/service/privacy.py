"""Result reporting per deployment (docs/privacy.md): an operator deploys with `report_results: false` (tinymlaas
deploy --no-result-reporting) and the device itself stops sending inference results — it refuses Reads and
Observes of Last Result and Last Top Class (/32770/0/22, 23) with 4.03, ends the observations of them and leaves
them out of whole-object reads, until a deployment switches reporting on again. The switch is the device's
(TinyML /32770/0/31, kept in its flash): results that never leave the device are the only ones an operator can be
sure are not kept anywhere, so the service does not merely drop what arrives.

The service writes the switch right before it delivers the deployment's package to a device (the engine calls
`plan` for each device, then `install`): off is always written, and a device that cannot take it (no resource
31: a client from before it) fails that install instead of keeping on reporting; on is written only to a device
that reports it off.
"""

from ..db import migration
from ..lwm2m.server import LwM2MError
from .deployments import DeliveryError

RESULT_REPORTING_PATH = "/32770/0/31"

migration("privacy", 1, """CREATE TABLE deployment_privacy (
    deployment_id INTEGER PRIMARY KEY,
    report_results INTEGER NOT NULL)""")


class ResultReporting:
    def __init__(self, db, server):
        self.db = db
        self.server = server
        self._next = {}  # endpoint -> report_results of the deployment planned for it last

    def set(self, dep_id, on):
        self.db.execute("INSERT INTO deployment_privacy (deployment_id, report_results) VALUES (?, ?)",
                        (int(dep_id), 1 if on else 0))

    def get(self, dep_id):
        row = self.db.query_one("SELECT report_results FROM deployment_privacy WHERE deployment_id=?", (int(dep_id),))
        return bool(row["report_results"]) if row else True

    def planned(self, dep_id, endpoint):
        """The engine planned deployment `dep_id` for `endpoint`: its install carries the deployment's switch."""
        self._next[endpoint] = self.get(dep_id)

    async def before_install(self, endpoint):
        on = self._next.pop(endpoint, None)
        if on is None:  # not planned here (a rollback to the previous model): the switch stays as it is
            return
        reg = self.server.find(endpoint)
        reported = (reg.capabilities or {}).get("Result Reporting") if reg is not None else None
        if on and reported is not False:
            return
        try:
            await self.server.write(endpoint, RESULT_REPORTING_PATH, bool(on))
        except LwM2MError as e:
            raise DeliveryError("cannot switch result reporting %s on the device (TinyML %s): %s"
                                % ("on" if on else "off", RESULT_REPORTING_PATH, e)) from None


class ReportingChannel:
    """The engine's DeviceChannel, with the deployment's result-reporting switch written before each install."""

    def __init__(self, channel, reporting):
        self._channel = channel
        self._reporting = reporting

    def __getattr__(self, name):
        return getattr(self._channel, name)

    async def install(self, endpoint, package, name, version, progress=None):
        await self._reporting.before_install(endpoint)
        return await self._channel.install(endpoint, package, name, version, progress=progress)
