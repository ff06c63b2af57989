#!/usr/bin/env python3
"""Talks to a running berth-engine from Python, to prove the gRPC API works outside Rust.

    python client_test.py --socket /run/berth/engine.sock --proto-dir /path/to/berth/proto

Stubs are generated at run time with grpc_tools.protoc from every .proto under
--proto-dir, so this checks the .proto files themselves as a client in another language
would use them. Needs the packages grpcio and grpcio-tools (grpcio-health-checking is
used when present; otherwise the health.proto beside this file is compiled).

Prints one line per check and exits 0 only when every check passed, 1 otherwise
(2 for a usage error or a setup failure before any check could run).
"""

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import grpc
    from grpc_tools import protoc
except ImportError as e:  # pragma: no cover - environment problem, not a test failure
    sys.exit(
        f"error: {e}. Install the Python packages: pip install grpcio grpcio-tools "
        "(deploy/test.sh makes a venv with them at target/pyenv)"
    )

HERE = Path(__file__).resolve().parent
CALL_TIMEOUT = 10.0


def well_known_protos_dir():
    """The google/protobuf/*.proto files that grpcio-tools bundles in grpc_tools/_proto."""
    try:
        from importlib.resources import files

        path = Path(str(files("grpc_tools") / "_proto"))
    except (ImportError, TypeError):  # Python < 3.9
        import pkg_resources

        path = Path(pkg_resources.resource_filename("grpc_tools", "_proto"))
    if not (path / "google" / "protobuf" / "timestamp.proto").is_file():
        sys.exit(f"error: grpc_tools has no well-known protos under {path}")
    return path


def run_protoc(includes, files, out_dir):
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in includes]
    args += [f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [str(f) for f in files]
    rc = protoc.main(args)
    if rc != 0:
        sys.exit(f"error: grpc_tools.protoc failed (exit code {rc}) on {len(files)} files")


def generate_stubs(proto_dir, out_dir):
    """Compiles every .proto under proto_dir into out_dir and puts out_dir on sys.path."""
    protos = sorted(proto_dir.rglob("*.proto"))
    if not protos:
        sys.exit(f"error: no .proto files under {proto_dir}")
    run_protoc([proto_dir, well_known_protos_dir()], protos, out_dir)
    sys.path.insert(0, str(out_dir))
    print(f"generated Python stubs for {len(protos)} .proto files from {proto_dir}")


def health_modules(out_dir):
    """(health_pb2, health_pb2_grpc): grpcio-health-checking's, else our own health.proto."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        return health_pb2, health_pb2_grpc, "grpc_health.v1"
    except ImportError:
        run_protoc([HERE, well_known_protos_dir()], [HERE / "health.proto"], out_dir)
        return (
            importlib.import_module("health_pb2"),
            importlib.import_module("health_pb2_grpc"),
            str(HERE / "health.proto"),
        )


class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def check(self, name, fn):
        """Runs fn(); it returns a detail string on success or raises AssertionError."""
        try:
            detail = fn()
        except AssertionError as e:
            self.failed.append(name)
            print(f"FAIL {name}: {e}")
        except grpc.RpcError as e:
            self.failed.append(name)
            print(f"FAIL {name}: gRPC error {e.code().name}: {e.details()}")
        except Exception as e:  # noqa: BLE001 - report anything as a failed check
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        else:
            self.passed += 1
            print(f"ok   {name}" + (f": {detail}" if detail else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="the engine's unix socket")
    parser.add_argument(
        "--proto-dir", required=True, type=Path, help="folder holding berth/**/*.proto"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds to wait for the engine and its services to be ready (default 20)",
    )
    args = parser.parse_args()
    proto_dir = args.proto_dir.resolve()
    if not proto_dir.is_dir():
        print(f"error: --proto-dir {proto_dir} is not a directory", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="berth-pystubs-") as tmp:
        out_dir = Path(tmp)
        generate_stubs(proto_dir, out_dir)
        version_pb2 = importlib.import_module("berth.version.v1.version_pb2")
        version_grpc = importlib.import_module("berth.version.v1.version_pb2_grpc")
        system_pb2 = importlib.import_module("berth.engine.v1.system_pb2")
        system_grpc = importlib.import_module("berth.engine.v1.system_pb2_grpc")
        volumes_pb2 = importlib.import_module("berth.engine.v1.volumes_pb2")
        volumes_grpc = importlib.import_module("berth.engine.v1.volumes_pb2_grpc")
        health_pb2, health_grpc, health_from = health_modules(out_dir)
        print(f"health stubs from {health_from}")

        # grpc.default_authority is REQUIRED: without it grpcio sends the %-encoded socket
        # path (e.g. "%2Frun%2Fberth%2Fengine.sock") as the HTTP/2 :authority, which is not
        # a valid authority, and the Rust h2 server rejects the request.
        target = "unix://" + os.path.abspath(args.socket)
        channel = grpc.insecure_channel(
            target, options=[("grpc.default_authority", "localhost")]
        )
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
        except grpc.FutureTimeoutError:
            print(
                f"error: could not connect to {target} within {args.timeout:g}s",
                file=sys.stderr,
            )
            return 1
        print(f"connected to {target}")

        system = system_grpc.SystemStub(channel)
        volumes = volumes_grpc.VolumesStub(channel)
        version = version_grpc.VersionStub(channel)
        health = health_grpc.HealthStub(channel)
        checks = Checks()

        def system_version():
            # Right after the engine starts, its embedded snapshotter may still be coming
            # up: ask again until it answers or the timeout passes.
            deadline = time.monotonic() + args.timeout
            while True:
                r = system.Version(system_pb2.VersionRequest(), timeout=CALL_TIMEOUT)
                if r.snapshotter.version or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            assert r.api_version == "v1", f"api_version is {r.api_version!r}, want 'v1'"
            assert r.engine.version, "engine.version is empty"
            assert r.snapshotter.version, (
                f"snapshotter.version is empty (address {r.snapshotter.address!r}, "
                f"error {r.snapshotter.error!r})"
            )
            return (
                f"api {r.api_version}, engine {r.engine.version}, "
                f"snapshotter {r.snapshotter.version}, builder {r.builder.version or '-'}"
            )

        def own_version():
            r = version.Version(version_pb2.VersionRequest(), timeout=CALL_TIMEOUT)
            assert r.component == "berth-engine", (
                f"component is {r.component!r}, want 'berth-engine'"
            )
            return f"{r.component} {r.version} ({r.platform}, api {r.api_version})"

        def health_check():
            r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, (
                f"status is {name}, want SERVING"
            )
            return name

        def info():
            r = system.Info(system_pb2.InfoRequest(), timeout=CALL_TIMEOUT)
            assert r.state_dir, "state_dir is empty"
            assert r.server_version, "server_version is empty"
            return f"id {r.id or '-'}, state_dir {r.state_dir}, {len(r.services)} services"

        def disk_usage():
            r = system.DiskUsage(system_pb2.DiskUsageRequest(), timeout=CALL_TIMEOUT)
            kinds = [e.kind for e in r.entries]
            assert "images" in kinds, f"kinds are {kinds!r}, want 'images' among them"
            return ", ".join(f"{e.kind} {e.total}" for e in r.entries)

        def volumes_list_unimplemented():
            try:
                volumes.List(volumes_pb2.VolumesListRequest(), timeout=CALL_TIMEOUT)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (
                    f"code is {e.code().name} ({e.details()!r}), want UNIMPLEMENTED"
                )
                assert "Volumes/List" in (e.details() or ""), (
                    f"details {e.details()!r} do not name Volumes/List"
                )
                return e.details()
            raise AssertionError("Volumes/List answered OK, want UNIMPLEMENTED")

        checks.check("berth.engine.v1.System/Version", system_version)
        checks.check("berth.version.v1.Version/Version", own_version)
        checks.check("grpc.health.v1.Health/Check", health_check)
        checks.check("berth.engine.v1.System/Info", info)
        checks.check("berth.engine.v1.System/DiskUsage", disk_usage)
        checks.check("berth.engine.v1.Volumes/List is UNIMPLEMENTED", volumes_list_unimplemented)
        channel.close()

    total = checks.passed + len(checks.failed)
    if checks.failed:
        print(f"{checks.passed} passed, {len(checks.failed)} failed")
        print(f"error: {len(checks.failed)} of {total} checks failed: {', '.join(checks.failed)}")
        return 1
    print(f"{checks.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
