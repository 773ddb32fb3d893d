"""A firmware built without its TLS library has no `cryptolib` (MicroPython's unix port with MICROPY_SSL_MBEDTLS=0,
as docs/boards.md once built it): OSCORE must say so when it is imported, with where to look, instead of the bare
"no module named 'cryptolib'" the device used to print. Played here by a cryptolib without AES, which MicroPython's
import reports the same way (ImportError)."""


def test_oscore_without_cryptolib_names_what_the_firmware_lacks(mpy_run):
    out = mpy_run("""
import sys
class NoAES:
    pass
sys.modules['cryptolib'] = NoAES()
try:
    from coap import oscore
except ImportError as e:
    print(e)
""")
    assert out.strip() == ("OSCORE needs the cryptolib module (AES), which this firmware was built without: build "
                           "MicroPython with its TLS library (docs/boards.md)")
