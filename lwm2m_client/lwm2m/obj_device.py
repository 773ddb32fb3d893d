# Object 0 Security, 1 Server, 3 Device.
import hal

from .objects import BOOLEAN, INTEGER, NONE, OPAQUE, STRING, TIME, LwObject, ResourceError


class Security(LwObject):
    """Bootstrap-provisioned credentials; never readable by the management server (the client answers 4.01)."""

    oid = 0
    resources = {0: (STRING, ""), 1: (BOOLEAN, ""), 2: (INTEGER, ""), 3: (OPAQUE, ""), 5: (OPAQUE, ""),
                 10: (INTEGER, "")}

    def __init__(self, server_uri, short_id=1):
        super().__init__()
        self.uri = server_uri
        self.short_id = short_id

    def read(self, iid, rid):
        return {0: self.uri, 1: False, 2: 3, 3: b"", 5: b"", 10: self.short_id}[rid]  # mode 3: NoSec


class Server(LwObject):
    oid = 1
    version = "1.1"
    resources = {0: (INTEGER, "R"), 1: (INTEGER, "RW"), 2: (INTEGER, "RW"), 3: (INTEGER, "RW"),
                 6: (BOOLEAN, "RW"), 7: (STRING, "RW"), 8: (NONE, "E")}

    def __init__(self, short_id=1):
        super().__init__()
        self.short_id = short_id
        self.default_pmin = 0
        self.default_pmax = 0

    def read(self, iid, rid):
        c = self.client
        return {0: self.short_id, 1: c.lifetime, 2: self.default_pmin, 3: self.default_pmax, 6: False,
                7: c.binding}[rid]

    def write(self, iid, rid, value):
        if rid == 1:
            if value < 1:
                raise ResourceError(0x80, "lifetime must be positive")
            self.client.lifetime = value
            self.client.update_due = True  # tell the server the new lifetime
        elif rid == 2:
            self.default_pmin = value
        elif rid == 3:
            self.default_pmax = value
        elif rid == 7:
            if value != "U":
                raise ResourceError(0x80, "only binding U is supported")
        elif rid == 0:
            raise ResourceError(0x85)

    def execute(self, iid, rid, arg):
        self.client.update_due = True  # Registration Update Trigger


class Device(LwObject):
    oid = 3
    version = "1.1"
    resources = {0: (STRING, "R"), 1: (STRING, "R"), 2: (STRING, "R"), 3: (STRING, "R"), 4: (NONE, "E"),
                 9: (INTEGER, "R"), 10: (INTEGER, "R"), 11: (INTEGER, "RM"), 13: (TIME, "RW"), 16: (STRING, "R"),
                 17: (STRING, "R"), 18: (STRING, "R"), 19: (STRING, "R"), 21: (INTEGER, "R")}

    def __init__(self, info):
        # info: manufacturer, model, serial, fw_version, device_type, hw_version (from the device config)
        super().__init__()
        self.info = info
        self.error_code = 0

    def read(self, iid, rid):
        i = self.info
        if rid == 0:
            return i.get("manufacturer", "tinymlaas")
        if rid == 1:
            return i.get("model", "micropython-" + hal.machine_name().split(" ")[0])
        if rid == 2:
            return i.get("serial", "")
        if rid == 3:
            return i.get("fw_version", "micropython " + hal.runtime_version())
        if rid == 9:
            return i.get("battery", 100)
        if rid == 10:
            return hal.mem_free() // 1024
        if rid == 11:
            return (self.error_code,)  # Multiple; one instance, 0 = no error
        if rid == 13:
            return hal.unix_time()
        if rid == 16:
            return self.client.binding
        if rid == 17:
            return i.get("device_type", "tinyml-node")
        if rid == 18:
            return i.get("hw_version", hal.machine_name())
        if rid == 19:
            return i.get("sw_version", "tinymlaas-client 0.1")
        if rid == 21:
            return hal.mem_total() // 1024
        raise ResourceError(0x85)

    def write(self, iid, rid, value):
        if rid != 13:
            raise ResourceError(0x85)
        if value < 0:
            raise ResourceError(0x80, "time before 1970")
        hal.set_unix_time(value)

    def execute(self, iid, rid, arg):
        # Reboot after the 2.04 has gone out
        self.client.defer(hal.reboot)
