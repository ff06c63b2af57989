#!/usr/bin/env python3
"""Writes a test image archive for the load/save benchmark: an OCI image layout plus a
`docker save` manifest.json (as Docker 25+ writes), with N gzip layers of about SIZE MB in
all. Layer contents are half random (incompressible), half repetitive, like real images.

    python3 bench/make_image.py OUT.tar --size-mb 300 --layers 5 --name bench:latest
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def layer(index, size):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        remaining, n = size, 0
        while remaining > 0:
            chunk = min(remaining, 4 << 20)
            half = chunk // 2
            data = os.urandom(half) + (b"berth layer %d file %d\n" % (index, n)) * (
                (chunk - half) // 24 + 1
            )
            add_bytes(t, "layer%d/file%05d" % (index, n), data[:chunk])
            remaining -= chunk
            n += 1
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--size-mb", type=int, default=300)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--name", default="docker.io/library/bench:latest")
    p.add_argument("--level", type=int, default=1, help="gzip level of the layers")
    a = p.parse_args()

    per_layer = a.size_mb * (1 << 20) // a.layers
    blobs, diff_ids, layer_descs = {}, [], []
    for i in range(a.layers):
        raw = layer(i, per_layer)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=a.level, mtime=0)
        d = "sha256:" + hashlib.sha256(gz).hexdigest()
        blobs[d] = gz
        layer_descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(gz)}
        )
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_d = "sha256:" + hashlib.sha256(config).hexdigest()
    blobs[config_d] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": len(config)},
            "layers": layer_descs,
        }
    ).encode()
    manifest_d = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blobs[manifest_d] = manifest
    short = a.name.replace("docker.io/library/", "")
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_d,
                "size": len(manifest),
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": "blobs/sha256/" + config_d[7:],
            "RepoTags": [short],
            "Layers": ["blobs/sha256/" + l["digest"][7:] for l in layer_descs],
        }
    ]
    with tarfile.open(a.out, "w") as t:
        add_bytes(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(t, "index.json", json.dumps(index).encode())
        add_bytes(t, "manifest.json", json.dumps(docker_manifest).encode())
        for d, data in blobs.items():
            add_bytes(t, "blobs/sha256/" + d[7:], data)
    print(f"{a.out}: {a.layers} layers, {a.size_mb} MB uncompressed, image id {config_d}")


if __name__ == "__main__":
    main()
