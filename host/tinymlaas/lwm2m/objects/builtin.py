"""Built-in object tables: (id, name, multiple, mandatory, [(rid, name, ops, multiple, mandatory, type)], version).

Resource IDs and types follow the OMA registry for objects 0, 1, 3, 5 and 21. The TinyML object here is only the
fallback used when docs/tinyml-object.xml is absent.
"""

S, I, U, F, B, O, T, L, N = "String", "Integer", "Unsigned Integer", "Float", "Boolean", "Opaque", "Time", "Objlnk", "none"

SECURITY = (0, "LwM2M Security", True, True, [
    (0, "LWM2M Server URI", "", False, True, S),
    (1, "Bootstrap-Server", "", False, True, B),
    (2, "Security Mode", "", False, True, I),
    (3, "Public Key or Identity", "", False, True, O),
    (4, "Server Public Key", "", False, True, O),
    (5, "Secret Key", "", False, True, O),
    (10, "Short Server ID", "", False, False, I),
    (11, "Client Hold Off Time", "", False, False, I),
    (12, "Bootstrap-Server Account Timeout", "", False, False, I),
    (17, "OSCORE Security Mode", "", False, False, L),
], "1.1")

# Object 21 (LwM2M OSCORE, OMA registry): written by the Bootstrap-Server only (lwm2m/bootstrap.py).
OSCORE = (21, "OSCORE", True, False, [
    (0, "OSCORE Master Secret", "", False, True, O),
    (1, "OSCORE Sender ID", "", False, True, O),
    (2, "OSCORE Recipient ID", "", False, True, O),
    (3, "OSCORE AEAD Algorithm", "", False, False, I),
    (4, "OSCORE HMAC Algorithm", "", False, False, I),
    (5, "OSCORE Master Salt", "", False, False, O),
    (6, "OSCORE ID Context", "", False, False, O),
], "1.0")

SERVER = (1, "LwM2M Server", True, True, [
    (0, "Short Server ID", "R", False, True, I),
    (1, "Lifetime", "RW", False, True, I),
    (2, "Default Minimum Period", "RW", False, False, I),
    (3, "Default Maximum Period", "RW", False, False, I),
    (4, "Disable", "E", False, False, N),
    (5, "Disable Timeout", "RW", False, False, I),
    (6, "Notification Storing When Disabled or Offline", "RW", False, True, B),
    (7, "Binding", "RW", False, True, S),
    (8, "Registration Update Trigger", "E", False, True, N),
    (9, "Bootstrap-Request Trigger", "E", False, False, N),
    (16, "Mute Send", "RW", False, False, B),
], "1.1")

DEVICE = (3, "Device", False, True, [
    (0, "Manufacturer", "R", False, False, S),
    (1, "Model Number", "R", False, False, S),
    (2, "Serial Number", "R", False, False, S),
    (3, "Firmware Version", "R", False, False, S),
    (4, "Reboot", "E", False, True, N),
    (5, "Factory Reset", "E", False, False, N),
    (6, "Available Power Sources", "R", True, False, I),
    (7, "Power Source Voltage", "R", True, False, I),
    (8, "Power Source Current", "R", True, False, I),
    (9, "Battery Level", "R", False, False, I),
    (10, "Memory Free", "R", False, False, I),
    (11, "Error Code", "R", True, True, I),
    (12, "Reset Error Code", "E", False, False, N),
    (13, "Current Time", "RW", False, False, T),
    (14, "UTC Offset", "RW", False, False, S),
    (15, "Timezone", "RW", False, False, S),
    (16, "Supported Binding and Modes", "R", False, True, S),
    (17, "Device Type", "R", False, False, S),
    (18, "Hardware Version", "R", False, False, S),
    (19, "Software Version", "R", False, False, S),
    (20, "Battery Status", "R", False, False, I),
    (21, "Memory Total", "R", False, False, I),
], "1.1")

FIRMWARE_UPDATE = (5, "Firmware Update", False, False, [
    (0, "Package", "W", False, True, O),
    (1, "Package URI", "RW", False, True, S),
    (2, "Update", "E", False, True, N),
    (3, "State", "R", False, True, I),
    (5, "Update Result", "R", False, True, I),
    (6, "PkgName", "R", False, False, S),
    (7, "PkgVersion", "R", False, False, S),
    (8, "Firmware Update Protocol Support", "R", True, False, I),
    (9, "Firmware Update Delivery Method", "R", False, True, I),
])

TINYML_FALLBACK = (32770, "TinyML", False, False, [
    # Mirrors lwm2m_client/lwm2m/obj_tinyml.py (the device side); docs/tinyml-object.xml is authoritative.
    (0, "Free Heap", "R", False, True, I),
    (1, "Largest Free Block", "R", False, True, I),
    (2, "Heap Total", "R", False, True, I),
    (3, "Flash Free", "R", False, True, I),
    (4, "Platform", "R", False, True, S),
    (5, "Machine", "R", False, True, S),
    (6, "MPY ABI", "R", False, True, S),
    (7, "Runtime Name", "R", False, True, S),
    (8, "Runtime Version", "R", False, True, S),
    (9, "Kernel Flavour", "R", False, True, S),
    (10, "Supported Ops", "R", False, True, S),
    (11, "Model Name", "R", False, False, S),
    (12, "Model Version", "R", False, False, S),
    (13, "Model SHA256", "R", False, False, S),
    (14, "Arena Bytes", "R", False, False, I),
    (15, "Blob Bytes", "R", False, False, I),
    (16, "Model State", "R", False, False, S),
    (17, "Inference Count", "R", False, False, I),
    (18, "Last Latency us", "R", False, False, I),
    (19, "Self Test", "E", False, False, N),
    (20, "Self Test Result", "R", False, False, S),
    (21, "Input", "W", False, False, O),
    (22, "Last Result", "R", False, False, O),
    (23, "Last Top Class", "R", False, False, I),
])

OBJECTS = [SECURITY, SERVER, OSCORE, DEVICE, FIRMWARE_UPDATE, TINYML_FALLBACK]
