# LwM2M 1.1 Send (Core TS §6.4.1, Information Reporting interface): the client reports resource values to its
# server unasked, with a CON POST to /dp whose payload is SenML-CBOR (Content-Format 112) with full paths as
# names. Imported only by lwm2m/anomaly.py, so a device whose model raises no alarms never loads it.
from coap import message as cm

from . import content, senml


class Sender:
    """One Send in flight at a time, over the endpoint's usual CON retransmission; the caller's values are read
    when the Send leaves, so a report asked for while one is in flight goes right after it with the values of
    then (counters such as the alarm count make a lost report visible to the server, not a lost alarm)."""

    def __init__(self, client, base, values):
        self.client = client
        self.base = base  # "/32770/0/"
        self.values = values  # () -> [(name, value)] under base
        self.inflight = False
        self.again = False
        self.delivered = 0  # reports the server acknowledged with 2.04
        self.status = ""

    def report(self):
        if self.inflight:
            self.again = True
            return
        c = self.client
        if c is None or c.location is None:
            self.status = "not registered"  # the counters travel with the next report
            return
        msg = cm.Message(cm.CON, cm.POST, token=c.ep.new_token())
        msg.add(cm.URI_PATH, "dp")
        msg.add(cm.CONTENT_FORMAT, content.SENML_CBOR)
        msg.payload = senml.encode_cbor(self.base, self.values())
        self.inflight = True
        self.again = False
        c.ep.start(c.server, msg, self._done)

    def _done(self, t):
        self.inflight = False
        if t.state == "done" and t.response.code == cm.CHANGED:
            self.delivered += 1
            self.status = "delivered"
        elif t.state == "done":
            try:
                why = bytes(t.response.payload or b"")[:80].decode()
            except Exception:  # not UTF-8: the code alone
                why = ""
            self.status = ("%s %s" % (cm.code_str(t.response.code), why)).strip()
        else:
            self.status = "no answer (%s)" % t.state
        if self.status != "delivered":
            print("send to /dp:", self.status)
        if self.again:
            self.report()
