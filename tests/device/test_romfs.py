"""On a port with ROMFS (vfs.VfsRom), an installed blob is used in place from memory-mapped flash: no copy into
RAM and no weight streaming. The unix port has VfsRom, so the real code path runs, on an image written by
tinymlaas.boards.romfs (aligned file data)."""

from tinymlaas.devices import unixport
from tinymlaas.paths import VECTORS

SCRIPT = """
import gc, vfs, tinyml, tinyml.model  # the runtime's code: loaded before measuring load()
img = open(%r, 'rb').read()
vfs.mount(vfs.VfsRom(img), '/rom')
gc.collect(); before = gc.mem_free()
m = tinyml.load('/rom/model.blob')
gc.collect(); taken = before - gc.mem_free()
f = tinyml.load(%r)                       # the same blob from an ordinary file: streamed
x = bytes(len(bytes(m.input_buffer(0))))
print(m._src.streaming, f._src.streaming, bytes(m.predict(x)) == bytes(f.predict(x)), taken < %d)
"""


def test_blob_on_romfs_is_used_in_place(tmp_path):
    from tinymlaas.boards.romfs import build_image

    blob = VECTORS / "mlperf_ad.blob"          # 274 KB of weights
    image = tmp_path / "rom.img"
    image.write_bytes(build_image([("readme.txt", b"odd-sized file first"), ("model.blob", blob.read_bytes())]))
    out = unixport.run(code=SCRIPT % (str(image), str(blob), blob.stat().st_size // 8), heap="1m").stdout.decode()
    # mapped: not streaming; file: streaming; same outputs; load() took less than an eighth of the blob in RAM
    assert out.split() == ["False", "True", "True", "True"], out
