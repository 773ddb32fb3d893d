"""Real boards: flashing MicroPython firmware onto ESP32 chips (`esp_flash`), provisioning a MicroPython board
with the tinymlaas device packages over its raw REPL (`provision`), and the .mpy ABI rules both need (`mpy_abi`).

Everything here talks to hardware through the tools' own Python APIs (esptool, mpremote) in-process."""
