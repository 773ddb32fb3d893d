# LwM2M 1.1 Send (Core TS §6.4.1, Information Reporting interface): the client reports resource values to its
# server unasked, with a CON POST to /dp whose payload is SenML-CBOR (Content-Format 112) with full paths as
# names. Imported only by lwm2m/anomaly.py, so a device whose model raises no alarms never loads it.
from coap import message as cm

from . import content, senml


class Sender:
    """One Send in flight at a time, over the endpoint's usual CON retransmission. send() -> False when one is
    in flight or the client is not registered (the caller keeps its values for later); done(answered) hears
    True for 2.04, False for a refusal (4.xx/5.xx: sending it again would not help), None for no answer.

    Without OSCORE the server knows the device by its source address. A NAT that re-mapped the device, or a load
    balancer that opened a new session after a node failed over, gives it an address the server has not seen:
    the Send is refused 4.01 until the next Update tells the server. So a first 4.01 asks for that Update at once
    and sends the same payload again after it; a second 4.01 in a row is a refusal."""

    def __init__(self, client, base):
        self.client = client
        self.base = base  # "/32770/0/"
        self.inflight = False
        self.delivered = 0  # Sends the server acknowledged with 2.04
        self.status = ""
        self._done = None
        self._payload = None
        self._updated_for = False  # a 4.01 already made the client Update for this payload

    def send(self, items, done):
        c = self.client
        if self.inflight or c is None or c.location is None:
            if not self.inflight:
                self.status = "not registered"
            return False
        self._done = done
        self._updated_for = False
        self._post(senml.encode_cbor(self.base, items))
        return True

    def _post(self, payload):
        c = self.client
        msg = cm.Message(cm.CON, cm.POST, token=c.ep.new_token())
        msg.add(cm.URI_PATH, "dp")
        msg.add(cm.CONTENT_FORMAT, content.SENML_CBOR)
        msg.payload = self._payload = payload
        self.inflight = True
        c.ep.start(c.server, msg, self._answered)

    def _after_update(self):
        if not self.inflight and self._done is not None and self.client.location is not None:
            self._post(self._payload)

    def _answered(self, t):
        self.inflight = False
        answered = None
        if t.state == "done" and t.response.code == cm.UNAUTHORIZED and not self._updated_for:
            self._updated_for = True  # our address is new to the server (see the class): Update, then again
            self.status = "4.01: updating the registration, then sending again"
            self.client.update_due = True
            self.client.after_update = self._after_update
            return
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
        done, self._done, self._payload = self._done, None, None
        if done is not None:
            done(answered)
