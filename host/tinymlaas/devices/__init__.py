"""Ways to reach a device: the MicroPython unix port, emulators, serial boards."""
