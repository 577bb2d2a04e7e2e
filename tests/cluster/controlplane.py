"""A real, loopback-only Kubernetes control plane (etcd + kube-apiserver +
kube-controller-manager) for integration tests. See tests/cluster/README.md."""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CLUSTER_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = CLUSTER_DIR / "build.sh"
VERSIONS_FILE = CLUSTER_DIR / "versions.env"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
BUILD_HINT = "run `bash tests/cluster/build.sh` (from the repository root) to build them"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
SERVICE_CIDR = "10.0.0.0/24"
DISABLED_CONTROLLERS = ("node-lifecycle-controller", "taint-eviction-controller")
ADMIN_USER = "datasync-test-admin"
LOG_ARCHIVE = Path(os.environ.get("DATASYNC_CLUSTER_LOG_DIR", CLUSTER_DIR / ".logs"))


class MissingBinariesError(RuntimeError):
    pass


class ControlPlaneError(RuntimeError):
    pass


def versions_hash() -> str:
    pins = [
        line + "\n"
        for line in VERSIONS_FILE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    data = "".join(pins).encode() + BUILD_SCRIPT.read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def cache_root() -> Path:
    configured = os.environ.get("DATASYNC_CLUSTER_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "datasync-cluster"


def default_bin_dir() -> Path:
    configured = os.environ.get("DATASYNC_CLUSTER_BIN")
    return Path(configured) if configured else cache_root() / versions_hash() / "bin"


def check_binaries(bin_dir: Path, require_stamp: bool = False) -> dict[str, Path]:
    """Return the paths of all required binaries or raise a MissingBinariesError
    whose message names what is missing and what to run."""
    found = {name: bin_dir / name for name in REQUIRED_BINARIES}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise MissingBinariesError(
            f"control plane binaries missing in {bin_dir}: {', '.join(missing)}; {BUILD_HINT}"
        )
    stamp = bin_dir.parent / "stamp"
    if require_stamp and not stamp.is_file():
        raise MissingBinariesError(
            f"control plane build in {bin_dir.parent} is incomplete (no stamp file); {BUILD_HINT}"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {result.stderr}")


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def generate(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        d = self.directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=datasync-test-ca",
            cwd=d,
        )
        sans = ",".join(
            [
                "IP:127.0.0.1",
                "IP:10.0.0.1",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        self._issue(
            "apiserver",
            "/CN=kube-apiserver",
            f"subjectAltName={sans}\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature",
        )
        self._issue(
            "admin",
            f"/O=system:masters/CN={ADMIN_USER}",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature",
        )
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)

    def _issue(self, name: str, subject: str, extensions: str) -> None:
        d = self.directory
        (d / f"{name}.ext").write_text(extensions + "\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req",
            "-new",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "3650",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )


def kubeconfig_document(
    server: str, ca_file: Path, user: dict[str, str], namespace: str | None = None
) -> dict[str, Any]:
    context: dict[str, str] = {"cluster": "datasync-test", "user": "user"}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "datasync-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "datasync-test", "context": context}],
        "current-context": "datasync-test",
    }


def write_kubeconfig(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, free ports,
    temp data. Use start()/stop() or as a context manager."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        work_dir: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
        self._own_work_dir = work_dir is None
        self.work_dir = (
            Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="datasync-cluster-"))
        )
        self.log_dir = self.work_dir / "logs"
        self.pki = Pki(self.work_dir / "pki")
        self.etcd_port = 0
        self.api_port = 0
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._die_with_parent = die_with_parent
        self._binaries: dict[str, Path] = {}

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.work_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def start(self, timeout: float = 90.0) -> ControlPlane:
        """Start everything; on failure the processes are stopped but the work dir and
        logs are left for `stop(keep_logs_in=...)`."""
        try:
            self._binaries = check_binaries(self.bin_dir, require_stamp=self._is_cache_build())
        except MissingBinariesError:
            self.stop()
            raise
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pki.generate()
        self.etcd_port, self.api_port = free_port(), free_port()
        deadline = time.monotonic() + timeout
        try:
            self._start_etcd()
            self._wait(deadline, "etcd", self._etcd_healthy)
            self._start_apiserver()
            self._write_admin_kubeconfig()
            self._wait(deadline, "kube-apiserver /readyz", self._apiserver_ready)
            self._start_controller_manager()
            self._wait(deadline, "default ServiceAccount", self._default_sa_exists)
        except BaseException:
            self._stop_processes()
            raise
        return self

    def stop(self, keep_logs_in: Path | None = None) -> Path | None:
        self._stop_processes()
        kept = None
        if keep_logs_in and self.log_dir.exists():
            kept = self.archive_logs(keep_logs_in)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return kept

    def _stop_processes(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self._processes.pop(name, None)
            if process is not None:
                _terminate_group(process)

    def archive_logs(self, destination: Path) -> Path:
        target = destination / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        shutil.copytree(self.log_dir, target, dirs_exist_ok=True)
        return target

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def restart_apiserver(self, down_for: float = 0.0, timeout: float = 90.0) -> None:
        """Stop kube-apiserver alone (etcd and the controller manager keep running), wait
        `down_for` seconds, start it again on the same port and wait until it is ready.
        Clients see their connections and watch streams drop, as in a control-plane
        upgrade."""
        process = self._processes.pop("kube-apiserver", None)
        if process is not None:
            _terminate_group(process)
        time.sleep(down_for)
        deadline = time.monotonic() + timeout
        self._start_apiserver()
        self._wait(deadline, "kube-apiserver /readyz after a restart", self._apiserver_ready)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (as etcd's periodic compaction
        does) and return that revision: watches resuming from an older resourceVersion
        then get 410 Gone."""
        revision = int(self._etcd_call("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
        self._etcd_call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def _etcd_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.etcd_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def running(self) -> dict[str, int | None]:
        return {name: p.poll() for name, p in self._processes.items()}

    def kubeconfig_for_token(
        self, token: str, path: Path | None = None, namespace: str | None = None
    ) -> Path:
        target = path or Path(
            tempfile.mkstemp(prefix="token-", suffix=".kubeconfig", dir=self.work_dir)[1]
        )
        return write_kubeconfig(
            target, kubeconfig_document(self.server, self.ca_file, {"token": token}, namespace)
        )

    def kubeconfig_for_token_file(
        self, token_file: Path, path: Path, namespace: str | None = None
    ) -> Path:
        return write_kubeconfig(
            path,
            kubeconfig_document(
                self.server, self.ca_file, {"tokenFile": str(token_file)}, namespace
            ),
        )

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(kubeconfig or self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = 16
        return client.ApiClient(configuration)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(self.binary("kubectl")),
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"{' '.join(command)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def _is_cache_build(self) -> bool:
        return self.bin_dir == default_bin_dir() and "DATASYNC_CLUSTER_BIN" not in os.environ

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        try:
            self._processes[name] = subprocess.Popen(
                [str(self._binaries[name]), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.work_dir,
                preexec_fn=_die_with_parent if self._die_with_parent else None,
            )
        finally:
            log.close()

    def _start_etcd(self) -> None:
        peer = free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                "--name=datasync-test",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=datasync-test={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )

    def _start_controller_manager(self) -> None:
        pki = self.pki
        controllers = ",".join(["*", *(f"-{name}" for name in DISABLED_CONTROLLERS)])
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={controllers}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _write_admin_kubeconfig(self) -> None:
        write_kubeconfig(
            self.kubeconfig,
            kubeconfig_document(
                self.server,
                self.ca_file,
                {
                    "client-certificate": str(self.pki.admin_cert),
                    "client-key": str(self.pki.admin_key),
                },
            ),
        )

    def _wait(self, deadline: float, what: str, probe: Any) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            if probe():
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"timed out waiting for {what}; logs in {self.log_dir}")

    def _check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                tail = _tail(self.log_dir / f"{name}.log")
                raise ControlPlaneError(
                    f"{name} exited with {process.returncode}; logs in {self.log_dir}:\n{tail}"
                )

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
            ) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def request(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.server + path, timeout=5, context=self._ssl_context()
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def _apiserver_ready(self) -> bool:
        return self.request("/readyz")[0] == 200

    def _default_sa_exists(self) -> bool:
        return self.request("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200


def _terminate_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


def _signal_group(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_forever() -> None:
    with suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Datasync test control plane.")
    parser.add_argument("--no-pod-runner", action="store_true")
    parser.add_argument(
        "--selector", default=None, help="pod runner label selector ('' for all pods)"
    )
    options = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    plane = ControlPlane()
    try:
        plane.start()
    except MissingBinariesError as error:
        print(error, file=sys.stderr)
        return 2
    except ControlPlaneError as error:
        kept = plane.stop(keep_logs_in=LOG_ARCHIVE)
        print(f"{error}\nlogs kept in {kept}", file=sys.stderr)
        return 1
    except BaseException:
        plane.stop()
        raise
    runner = None
    try:
        if not options.no_pod_runner:
            from tests.cluster.podrunner import DEFAULT_SELECTOR, PodRunner

            selector = DEFAULT_SELECTOR if options.selector is None else options.selector
            runner = PodRunner(
                plane.kubeconfig,
                label_selector=selector or None,
                state_dir=plane.work_dir / "podrunner",
            ).start()
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print(f"export PATH={plane.bin_dir}:$PATH")
        print(f"# server {plane.server}; component logs in {plane.log_dir}", flush=True)
        if runner is not None:
            print(f"# pod runner logs in {runner.log_root}", flush=True)
        print("# control plane running; press Ctrl-C to stop", flush=True)
        _wait_forever()
    finally:
        if runner is not None:
            runner.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
