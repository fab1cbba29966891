"""`bakery status` against a local TLS stand-in of the API server (standins/kubeapi_tls.py)
whose server certificate and client-certificate check come from the rendered cluster's own CA."""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import stat
import tempfile

import pytest
import yaml
from standins.kubeapi_tls import ApiServer, Issuer, node

from conftest import LAB, run_bakery

NODES = ("k8s-master", "k8s-node1", "k8s-node2")  # examples/lab
POLL = {"BAKERY_STATUS_POLL_SECONDS": "0.05"}


@pytest.fixture
def lab(renders, tmp_path):
    """A private copy of the lab's render, its CA (from the bundle) and its admin credential."""
    out = renders.copy(renders.example("lab"), tmp_path / "out")
    bundle = yaml.safe_load((out / "secrets.yaml").read_text())
    ca = Issuer.from_pem(bundle["ca"]["certificate"], bundle["ca"]["key"])
    return out, ca


def point_at(out, port: int, host: str = "127.0.0.1") -> None:
    """admin.conf of the render, its server moved to the stand-in (nothing else changes)."""
    conf = out / "admin.conf"
    doc = yaml.safe_load(conf.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://192.168.56.30:6443"
    doc["clusters"][0]["cluster"]["server"] = f"https://{host}:{port}"
    conf.write_text(yaml.safe_dump(doc))


def api(ca: Issuer, *, server_ca: Issuer | None = None, ips=("127.0.0.1",), dns=("kubernetes",),
        responses=None, tls_client_cas=None) -> ApiServer:
    server_cert = (server_ca or ca).issue(cn="kube-apiserver", ips=ips, dns=dns, server=True)
    return ApiServer(server_cert=server_cert, tls_client_cas=tls_client_cas or [ca.pem], authn_ca=ca,
                     responses=responses if responses is not None else [[node(n) for n in NODES]])


def status(out, *args, env=None):
    return run_bakery("status", LAB, "--out", out, *args, env={**os.environ, **(env or {})})


def lines(text: str) -> dict[str, list[str]]:
    return {ln.split()[0]: ln.split()[1:] for ln in text.splitlines() if ln.strip()}


# -- the stand-in enforces its rules ------------------------------------------------------

def _get(server: ApiServer, cert_key: tuple[bytes, bytes] | None, ca: Issuer, path="/api/v1/nodes"):
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    if cert_key:
        with tempfile.TemporaryDirectory() as folder:
            c, k = os.path.join(folder, "c"), os.path.join(folder, "k")
            for name, data in ((c, cert_key[0]), (k, cert_key[1])):
                with open(name, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(c, k)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_standin_serves_nodes_to_the_admin_only(lab):
    _, ca = lab
    with api(ca) as server:
        assert _get(server, ca.issue(cn="kubernetes-admin", orgs=("kubeadm:cluster-admins",)), ca) == 200
        assert _get(server, ca.issue(cn="kubernetes-admin", orgs=("kubeadm:cluster-admins",)), ca, "/x") == 404
        assert _get(server, ca.issue(cn="someone", orgs=("kubeadm:cluster-admins",)), ca) == 403
        assert _get(server, ca.issue(cn="kubernetes-admin", orgs=("developers",)), ca) == 403


@pytest.mark.parametrize("client", ["none", "other-ca", "server-cert"])
def test_standin_refuses_the_handshake_without_a_client_certificate_of_its_ca(lab, client):
    _, ca = lab
    admin = {"cn": "kubernetes-admin", "orgs": ("kubeadm:cluster-admins",)}
    cert = {"none": None, "other-ca": Issuer.new_ca().issue(**admin),
            "server-cert": ca.issue(**admin, server=True)}[client]
    with api(ca) as server, pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException,
                                           socket.timeout)):
        _get(server, cert, ca)
    # after the server's shutdown, which waits for the handshake it was handling to end
    assert server.handshake_errors and not server.requests


def test_standin_answers_401_for_a_certificate_its_authenticator_does_not_trust(lab):
    _, ca = lab
    other = Issuer.new_ca()
    with api(ca, tls_client_cas=[ca.pem, other.pem]) as server:
        assert _get(server, other.issue(cn="kubernetes-admin", orgs=("kubeadm:cluster-admins",)), ca) == 401


# -- bakery status --------------------------------------------------------------------------

def test_all_ready_exits_0_with_a_line_per_node(lab):
    out, ca = lab
    with api(ca) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    for n in NODES:
        assert got[n] == ["Ready", "v1.36.3"]
    assert server.requests == [("/api/v1/nodes", 200)]
    assert "PRIVATE KEY" not in r.stdout + r.stderr and "CERTIFICATE" not in r.stdout + r.stderr


def test_not_ready_missing_and_extra_nodes(lab):
    out, ca = lab
    nodes = [node("k8s-master"), node("k8s-node1", ready=False, kubelet="v1.36.2"), node("stray", kubelet="v1.35.0")]
    with api(ca, responses=[nodes]) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["k8s-master"] == ["Ready", "v1.36.3"]
    assert got["k8s-node1"] == ["NotReady", "v1.36.2"]
    assert got["k8s-node2"] == ["missing", "-"]
    assert got["stray"] == ["Ready", "v1.35.0", "(not", "in", "cluster.yaml)"]
    last = r.stdout.strip().splitlines()[-1]
    assert last == "not Ready: k8s-node1 (NotReady), k8s-node2 (missing)"


def test_a_node_without_a_ready_condition_is_not_ready(lab):
    out, ca = lab
    with api(ca, responses=[[node("k8s-master", ready=None), node("k8s-node1"), node("k8s-node2")]]) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1 and lines(r.stdout)["k8s-master"][0] == "NotReady"


def test_kubeconfig_option(lab, tmp_path):
    out, ca = lab
    with api(ca) as server:
        point_at(out, server.port)
        moved = tmp_path / "elsewhere.conf"
        moved.write_bytes((out / "admin.conf").read_bytes())
        (out / "admin.conf").unlink()
        r = status(tmp_path / "nowhere", "--kubeconfig", moved)
    assert r.returncode == 0, r.stderr


def test_no_admin_conf_is_bad_input(tmp_path):
    r = status(tmp_path / "nowhere")
    assert r.returncode == 2 and "admin.conf: no such kubeconfig" in r.stderr and "Traceback" not in r.stderr


def test_server_of_another_ca_is_refused(lab):
    out, ca = lab
    with api(ca, server_ca=Issuer.new_ca("kubernetes")) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "TLS verification failed" in r.stderr and "not signed by the CA" in r.stderr, r.stderr
    assert not server.requests


def test_server_name_mismatch_is_refused(lab):
    out, ca = lab
    with api(ca, ips=("10.0.0.1",), dns=("kubernetes",)) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "does not name 127.0.0.1" in r.stderr, r.stderr
    assert not server.requests


def test_client_certificate_of_another_ca_is_refused_at_the_handshake(lab):
    out, ca = lab
    other = Issuer.new_ca()
    with api(ca, tls_client_cas=[other.pem]) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "client certificate" in r.stderr and "bakery secrets renew" in r.stderr, r.stderr
    assert server.handshake_errors and not server.requests


def test_401_says_what_to_check(lab):
    out, ca = lab
    other = Issuer.new_ca()
    server = ApiServer(server_cert=ca.issue(cn="kube-apiserver", ips=("127.0.0.1",), server=True),
                       tls_client_cas=[ca.pem], authn_ca=other, responses=[[]])
    with server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "401 Unauthorized" in r.stderr and "bakery secrets renew" in r.stderr, r.stderr
    assert server.requests == [("/api/v1/nodes", 401)]


def test_connection_refused_says_what_to_check(lab):
    out, _ = lab
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    point_at(out, port)
    r = status(out)
    assert r.returncode == 1 and "cannot connect" in r.stderr and "reachable" in r.stderr, r.stderr


def test_wait_until_ready(lab):
    out, ca = lab
    responses = [[], [node("k8s-master", ready=False)], [node(n, ready=n != "k8s-node2") for n in NODES],
                 [node(n) for n in NODES]]
    with api(ca, responses=responses) as server:
        point_at(out, server.port)
        r = status(out, "--wait", "10m", env=POLL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [c for _, c in server.requests] == [200, 200, 200, 200]
    progress = [ln for ln in r.stderr.splitlines() if "waiting:" in ln]
    assert len(progress) == 4 and "0/3 nodes Ready" in progress[0] and "3/3 nodes Ready" in progress[-1]
    assert all(lines(r.stdout)[n] == ["Ready", "v1.36.3"] for n in NODES)


def test_wait_times_out(lab):
    out, ca = lab
    with api(ca, responses=[[node("k8s-master"), node("k8s-node1")]]) as server:
        point_at(out, server.port)
        r = status(out, "--wait", "1s", env=POLL)
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(server.requests) > 1
    assert r.stdout.strip().splitlines()[-1] == "not Ready: k8s-node2 (missing) after 1s"


def test_wait_shows_one_updating_line_on_a_terminal(lab):
    import pty
    import subprocess
    import sys

    out, ca = lab
    responses = [[], [node(n) for n in NODES]]
    with api(ca, responses=responses) as server:
        point_at(out, server.port)
        master, slave = pty.openpty()
        try:
            r = subprocess.run([sys.executable, "-m", "bakery", "status", str(LAB), "--out", str(out), "--wait", "5m"],
                               stdout=subprocess.PIPE, stderr=slave, env={**os.environ, **POLL}, timeout=120)
            os.close(slave)
            shown = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            os.close(master)
    assert r.returncode == 0
    text = shown.decode()
    live = text[text.index("\r\x1b[2K"):]  # after the lab's pod-cidr-public warning
    assert live.count("\r\x1b[2K") == 2 and "0/3 nodes Ready" in live and "3/3 nodes Ready" in live
    assert live.count("\n") == 1  # one line, rewritten in place, ended once


@pytest.mark.parametrize("bad", ["10x", "", "m10", "10m\n", "1h 2m"])
def test_bad_duration_is_bad_input(bad, tmp_path):
    r = status(tmp_path, "--wait", bad)
    assert r.returncode == 2 and "is not a duration" in r.stderr, r.stderr


def test_temporary_client_files_are_private_and_removed(lab, monkeypatch, tmp_path):
    """The client key reaches OpenSSL through a file in a 0700 folder, 0600, removed at once."""
    from bakery.deliver import kubeapi

    out, _ = lab
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    seen = []
    real = ssl.SSLContext.load_cert_chain

    def spy(self, certfile, keyfile=None, password=None):
        seen.append((stat.S_IMODE(os.stat(os.path.dirname(keyfile)).st_mode), stat.S_IMODE(os.stat(keyfile).st_mode)))
        return real(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    kubeapi.tls_context(kubeapi.load_kubeconfig(str(out / "admin.conf")))
    assert seen == [(0o700, 0o600)]
    assert list((tmp_path / "t").iterdir()) == []


def test_bad_poll_interval_is_bad_input(tmp_path):
    r = status(tmp_path, "--wait", "1m", env={"BAKERY_STATUS_POLL_SECONDS": "soon"})
    assert r.returncode == 2 and "BAKERY_STATUS_POLL_SECONDS" in r.stderr, r.stderr


def test_wait_asks_again_after_a_failed_request_and_reports_the_last_failure():
    """While the API server starts, a request fails; --wait asks again. A wait that ends on a
    failure raises it (exit 1 with what to check) rather than show an old answer."""
    from bakery.deliver import kubeapi
    from bakery.deliver import status as st

    now = [0.0]
    answers = [kubeapi.ApiError("down"), {"items": [node("a")]}]
    seen = []

    def fetch():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    def sleep(s):
        now[0] += s

    snap = st.poll(fetch, ["a"], 60, 5, lambda s, e, t: seen.append((s and s.summary(), str(e) if e else None)),
                   clock=lambda: now[0], sleep=sleep)
    assert snap.ready and seen == [(None, "down"), ("1/1 nodes Ready", None)]
    answers[:] = [{"items": []}, kubeapi.ApiError("gone"), kubeapi.ApiError("gone")]
    with pytest.raises(kubeapi.ApiError, match="gone"):
        st.poll(fetch, ["a"], 10, 5, lambda *a: None, clock=lambda: now[0], sleep=sleep)
    assert answers == []


def test_403_for_a_user_rbac_does_not_let_list_nodes(lab):
    import base64

    out, ca = lab
    cert, key = ca.issue(cn="jane", orgs=("developers",))
    with api(ca) as server:
        point_at(out, server.port)
        doc = yaml.safe_load((out / "admin.conf").read_text())
        doc["users"][0]["user"].update({"client-certificate-data": base64.b64encode(cert).decode(),
                                        "client-key-data": base64.b64encode(key).decode()})
        (out / "admin.conf").write_text(yaml.safe_dump(doc))
        r = status(out)
    assert r.returncode == 1 and "403 Forbidden" in r.stderr and "kubeadm init" in r.stderr, r.stderr
    assert server.requests == [("/api/v1/nodes", 403)]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(kind="Pod"), "not a kubeconfig"),
    (lambda d: d["clusters"][0]["cluster"].update(server="http://127.0.0.1:1"), "server must be https"),
    (lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "%%%"}), "not base64"),
    (lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "bm90IGEgY2VydA=="}),
     "certificate-authority-data is not a PEM certificate"),
    (lambda d: d["users"][0]["user"].pop("client-key-data"), "client-key-data is missing"),
    (lambda d: d["users"][0]["user"].update({"client-key-data": d["clusters"][0]["cluster"][
        "certificate-authority-data"]}), "are not a certificate and its key"),
    (lambda d: d.update({"current-context": "nope", "contexts": []}), "names no cluster and user"),
])
def test_a_kubeconfig_bakery_cannot_use_is_bad_input(lab, change, message):
    out, _ = lab
    doc = yaml.safe_load((out / "admin.conf").read_text())
    change(doc)
    (out / "admin.conf").write_text(yaml.safe_dump(doc))
    r = status(out)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "PRIVATE KEY" not in r.stderr


def test_names_from_the_api_server_are_escaped(lab):
    out, ca = lab
    with api(ca, responses=[[node(n) for n in NODES] + [node("evil\x1b[2J", kubelet="v1\u202e")]]) as server:
        point_at(out, server.port)
        r = status(out)
    assert r.returncode == 0
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout
    assert "evil\\x1b[2J" in r.stdout and "v1\\u202e" in r.stdout


def test_a_kubeconfig_that_is_not_a_regular_file_is_refused_at_once(lab, tmp_path):
    """A FIFO would block a plain open() forever: it is refused (exit 2) without waiting."""
    fifo = tmp_path / "admin.conf"
    os.mkfifo(fifo)
    r = status(lab, "--kubeconfig", fifo)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "not a kubeconfig" in r.stderr
