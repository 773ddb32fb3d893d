"""The CLI against a remote service: `tinymlaas serve` bound beyond loopback (so tokens are required), and a
"laptop" with its own HOME and config file registering a model by upload, listing and showing models, managing
tokens and listing devices; the upload's limits and refusals keep nothing."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinymlaas.commands import _http
from tinymlaas.errors import UserError
from tinymlaas.web import uploads

CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]
MODEL = Path(__file__).resolve().parents[1] / "corpus" / "models" / "conv_same_dilated.tflite"


@pytest.fixture
def remote(tmp_path):
    data = tmp_path / "service"
    admin = subprocess.run(CLI + ["tokens", "new", "--role", "admin", "--data", data], capture_output=True,
                           text=True, check=True).stdout.splitlines()[0]
    serve = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-host",
                                    "0.0.0.0", "--http-port", "0", "--data", data],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = serve.stdout.readline()
    m = re.search(r"API on http://0\.0\.0\.0:(\d+)/api/devices \(data .*, API tokens required\)", line)
    assert m, line + serve.stderr.read()
    laptop = tmp_path / "laptop"
    (laptop / ".config" / "tinymlaas").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYMLAAS_")}
    env.update(HOME=str(laptop), TINYMLAAS_DATA=str(laptop / "nothing-here"))

    def tml(*args, token=None):
        e = dict(env, TINYMLAAS_TOKEN=token) if token else env
        return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=e, cwd=laptop,
                              timeout=120)

    yield "http://127.0.0.1:%s" % m.group(1), admin, laptop, tml, data
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(10) == 0


def test_laptop_registers_a_model_on_the_service(remote, tmp_path):
    url, admin, laptop, tml, data = remote
    r = tml("devices", "--server", url)
    assert r.returncode == 2 and "TINYMLAAS_TOKEN" in r.stderr and len(r.stderr.splitlines()) == 1

    config = laptop / ".config" / "tinymlaas" / "config.json"
    config.write_text(json.dumps({"server": url, "token": admin}))
    config.chmod(0o644)
    r = tml("devices")
    assert r.returncode == 2 and "chmod 600" in r.stderr
    config.chmod(0o600)
    assert tml("devices").stdout.strip() == "no devices registered"          # server and token from the file

    np.save(tmp_path / "calib.npy", np.zeros((4, 8, 8, 1), np.float32))
    r = tml("models", "add", MODEL, "--name", "conv", "--version", "2", "--task", "demo", "--labels", "a,b",
            "--representative", tmp_path / "calib.npy", "--server", url, "--json")
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert added["model"]["name"] == "conv" and added["model"]["labels"] == ["a", "b"]
    assert {v["runtime"] for v in added["variants"]} == {"tinyml-mpy", "tflm"}
    assert added["model"]["metadata"]["representative"]                       # the dataset went along
    assert not list((data / "uploads").iterdir())                              # the upload's files are gone
    assert not (laptop / "nothing-here").exists()                              # nothing was done locally

    listed = json.loads(tml("models", "list", "--server", url, "--json").stdout)
    assert [(m["name"], m["version"], m["variants"]) for m in listed] == [("conv", "2", 2)]
    shown = tml("models", "show", "conv", "--version", "2", "--server", url)
    assert shown.returncode == 0 and "tmlb-int8" in shown.stdout and "tinyml-mpy" in shown.stdout
    local = subprocess.run(CLI + ["models", "list", "--data", data, "--json"], capture_output=True, text=True)
    assert [m["name"] for m in json.loads(local.stdout)] == ["conv"]          # it is on the service's machine

    r = tml("models", "add", MODEL, "--name", "conv", "--version", "2", "--server", url)
    assert r.returncode == 2 and "already exists" in r.stderr

    made = json.loads(tml("tokens", "new", "--role", "viewer", "--name", "ci", "--server", url, "--json").stdout)
    assert made["token"].startswith("tmla_" + made["id"])
    r = tml("models", "add", MODEL, "--name", "other", "--server", url, token=made["token"])
    assert r.returncode == 2 and "admin role" in r.stderr
    ids = [t["id"] for t in json.loads(tml("tokens", "list", "--server", url, "--json").stdout)]
    assert made["id"] in ids and admin.split("_")[1] in ids
    assert tml("tokens", "revoke", made["id"], "--server", url).returncode == 0
    assert tml("devices", token=made["token"]).returncode == 2


def test_a_token_from_the_config_file_goes_only_to_its_server(tmp_path, monkeypatch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": "https://fleet.example:8443/", "token": "tmla_x_y"}))
    config.chmod(0o600)
    monkeypatch.setenv("TINYMLAAS_CONFIG", str(config))
    monkeypatch.delenv("TINYMLAAS_TOKEN", raising=False)
    monkeypatch.delenv("TINYMLAAS_API", raising=False)
    assert _http.resolve(None) == ("https://fleet.example:8443", "tmla_x_y")
    assert _http.resolve("http://elsewhere:8080") == ("http://elsewhere:8080", None)
    monkeypatch.setenv("TINYMLAAS_TOKEN", "tmla_env")
    assert _http.resolve("http://elsewhere:8080") == ("http://elsewhere:8080", "tmla_env")
    with pytest.raises(UserError, match="http:// or https://"):
        _http.resolve("ftp://x")


def multipart(parts, boundary="b0undary"):
    body = b""
    for name, filename, content in parts:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
        body += b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (boundary.encode(), disp.encode(), content)
    return body + b"--%s--\r\n" % boundary.encode(), {"Content-Type": "multipart/form-data; boundary=" + boundary}


def test_upload_limits_and_refusals_keep_nothing(service_auth, monkeypatch):
    w = service_auth
    admin = w.client(w.token("admin"))
    monkeypatch.setattr(uploads, "MAX_UPLOAD", 1000)
    monkeypatch.setattr(uploads, "MAX_FIELD", 100)
    model = MODEL.read_bytes()
    assert len(model) > 1000
    cases = [
        ([("name", None, b"m"), ("model", "m.tflite", model)], 413),
        ([("name", None, b"m"), ("model", "m.tflite", b"not a model at all")], 400),
        ([("model", "m.tflite", b"TFL3")], 400),                                  # no name
        ([("name", None, b"m"), ("weights", "w.bin", b"x")], 400),                # an unknown part
        ([("name", None, b"m" * 200), ("model", "m.tflite", b"x")], 400),        # a field too long
    ]
    for parts, status in cases:
        body, headers = multipart(parts)
        got = admin.post("/api/models", data=body, headers=headers)
        assert got[0] == status, (parts[-1][:2], got[:2])
    assert admin.post("/api/models", data=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; "
                                                                          "boundary=x"})[0] == 400
    assert admin.post("/api/models", {"name": "m"})[0] == 400                  # JSON is not an upload
    big = admin.post("/api/models", data=b"x" * 10, headers={"Content-Type": "multipart/form-data; boundary=x",
                                                             "Content-Length": str(1 << 40)})
    assert big[0] in (400, 413)
    monkeypatch.setattr(uploads, "UPLOAD_TIME", 0.5)
    with socket.create_connection(("127.0.0.1", w.api.port)) as slow:        # sends a part of it, then stalls
        slow.sendall(b"POST /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\nContent-Type: "
                     b"multipart/form-data; boundary=x\r\nContent-Length: 900\r\n\r\n--x\r\nContent-Disposition: "
                     b"form-data; name=\"model\"; filename=\"m.tflite\"\r\n\r\nTFL3"
                     % admin.headers["Authorization"].encode())
        slow.settimeout(30)
        assert slow.recv(100).startswith(b"HTTP/1.1 408")
    assert admin.get("/api/models")[1] == []
    assert not list((w.svc.data_dir / "uploads").iterdir())


def self_signed(folder):
    """A certificate for 127.0.0.1 and its key (PEM files), made with cryptography."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinymlaas test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_https_with_a_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    data = tmp_path / "svc"
    token = subprocess.run(CLI + ["tokens", "new", "--role", "viewer", "--data", data], capture_output=True,
                           text=True, check=True).stdout.split()[0]
    assert subprocess.run(CLI + ["serve", "--tls-cert", cert, "--data", data], capture_output=True,
                          text=True).stderr.strip().endswith("--tls-cert and --tls-key go together")
    serve = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                    "--auth", "required", "--tls-cert", cert, "--tls-key", key, "--data", data],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        url = re.search(r"API on (https://127\.0\.0\.1:\d+)", line).group(1)
        env = dict(os.environ, TINYMLAAS_TOKEN=token, HOME=str(tmp_path))
        r = subprocess.run(CLI + ["devices", "--server", url], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in r.stderr     # not trusted yet
        r = subprocess.run(CLI + ["devices", "--server", url], capture_output=True, text=True,
                           env=dict(env, SSL_CERT_FILE=str(cert)))
        assert r.returncode == 0 and "no devices registered" in r.stdout
        login = subprocess.run(["curl", "-s", "-i", "--cacert", cert, "-X", "POST", url + "/api/session", "-d",
                                '{"token": "%s"}' % token], capture_output=True, text=True).stdout
        assert re.search(r"(?i)set-cookie: tinymlaas_session=[^\r\n]*; Secure", login), login
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(10)
