# LwM2M 1.1 client for MicroPython devices: content formats (cbor, senml, tlv, link, content), the object model
# (objects), the objects themselves (obj_*), observation state (observe), the client (client) and the
# package pull over CoAP Block2 (pull).
