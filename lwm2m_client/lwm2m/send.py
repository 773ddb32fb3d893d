# LwM2M 1.1 Send (Core TS §6.4.1, Information Reporting interface): the client reports resource values to its
# server unasked, with a CON POST to /dp whose payload is SenML-CBOR (Content-Format 112) with full paths as
# names. Imported only by lwm2m/anomaly.py, so a device whose model raises no alarms never loads it.
from coap import message as cm

from . import content, senml


class Sender:
    """One Send in flight at a time, over the endpoint's usual CON retransmission. send() -> False when one is
    in flight or the client is not registered (the caller keeps its values for later); done(answered) hears
    True for 2.04, False for a refusal (4.xx/5.xx: sending it again would not help), None for no answer."""

    def __init__(self, client, base):
        self.client = client
        self.base = base  # "/32770/0/"
        self.inflight = False
        self.delivered = 0  # Sends the server acknowledged with 2.04
        self.status = ""
        self._done = None

    def send(self, items, done):
        c = self.client
        if self.inflight or c is None or c.location is None:
            if not self.inflight:
                self.status = "not registered"
            return False
        msg = cm.Message(cm.CON, cm.POST, token=c.ep.new_token())
        msg.add(cm.URI_PATH, "dp")
        msg.add(cm.CONTENT_FORMAT, content.SENML_CBOR)
        msg.payload = senml.encode_cbor(self.base, items)
        self.inflight = True
        self._done = done
        c.ep.start(c.server, msg, self._answered)
        return True

    def _answered(self, t):
        self.inflight = False
        answered = None
        if t.state == "done" and t.response.code == cm.CHANGED:
            self.delivered += 1
            self.status = "delivered"
            answered = True
        elif t.state == "done":
            try:
                why = bytes(t.response.payload or b"")[:80].decode()
            except Exception:  # not UTF-8: the code alone
                why = ""
            self.status = ("%s %s" % (cm.code_str(t.response.code), why)).strip()
            answered = False
        else:
            self.status = "no answer (%s)" % t.state
        if not answered:
            print("send to /dp:", self.status)
        done, self._done = self._done, None
        if done is not None:
            done(answered)
