"""Image pulls from a real docker-registry on loopback, side by side with skopeo.

One image of --mib MiB of incompressible file bytes (in 4 MiB files, one gzip layer) is
pushed by skopeo to a throwaway ``docker-registry`` (tests/support/registry.py), plain
and encrypted (ocicrypt's AES-256-CTR + HMAC layer, its key wrapped as the
attestation-agent key provider does; the KEK is served by an in-process resource getter,
so no attestation is timed).  Then, each --rounds times, in one run:

- floor: the work any verifying pull must do on the layer, in process, from memory:
  sha256 of the blob, gunzip, sha256 of the tar (diff_id);
- skopeo: ``skopeo copy docker://… dir:…`` (fetch and digest-check, no unpacking);
- pull: ``ImagePuller.pull`` (fetch, digest-check, policy, unpack into a rootfs);
- pull_encrypted: the same with the layer decrypted on the way.

Figures are medians, in MiB/s of image bytes; ratios are times against skopeo and the
floor.  ``python benchmarks/image_pull.py [--mib N] [--rounds R]``.  The last line is one
JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from oci_build import skopeo_push  # noqa: E402
from registry import docker_registry  # noqa: E402

from veritee.guest.cdh_config import ImageConfig  # noqa: E402
from veritee.guest.resource_uri import parse_resource_uri  # noqa: E402
from veritee.image.encrypt import encrypt_image  # noqa: E402
from veritee.image.keyprovider import wrap_optsdata  # noqa: E402
from veritee.image.layout import OciLayout, build_image  # noqa: E402
from veritee.image.pull import ImagePuller  # noqa: E402

KID = "kbs:///default/image-kek/bench"
ACCEPT = json.dumps({"default": [{"type": "insecureAcceptAnything"}]})


def timed(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="image size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("skopeo") is None or shutil.which("docker-registry") is None:
        sys.exit("needs skopeo and docker-registry (Debian: apt-get install skopeo "
                 "docker-registry)")
    with tempfile.TemporaryDirectory(prefix="veritee-bench-") as scratch:
        work = Path(scratch)
        files = {f"data/{i:03d}.bin": os.urandom(4 << 20) for i in range(max(1, args.mib // 4))}
        size_mib = sum(len(b) for b in files.values()) / (1 << 20)
        layout = OciLayout.create(work / "oci")
        build_image(layout, files, tag="plain")
        kek = secrets.token_bytes(32)
        kid = parse_resource_uri(KID)
        encrypt_image(layout, "plain", layout, "enc",
                      lambda optsdata: wrap_optsdata(optsdata, kid, kek).to_json())
        blob = layout.read_blob(layout.manifest("plain").document["layers"][0]["digest"])

        def floor() -> None:
            hashlib.sha256(blob).hexdigest()
            hashlib.sha256(gzip.GzipFile(fileobj=io.BytesIO(blob)).read()).hexdigest()

        with docker_registry(work / "registry") as registry:
            skopeo_push(layout.root, "plain", registry, "bench/plain:1")
            skopeo_push(layout.root, "enc", registry, "bench/enc:1")
            conf = work / "registries.conf"
            conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
            config = ImageConfig(image_security_policy=ACCEPT,
                                 registry_configuration_uri=f"file://{conf}")
            resources = {KID: kek}
            puller = ImagePuller(config, resources.__getitem__, work_dir=work)
            runs = iter(range(10_000))

            def skopeo() -> None:
                dest = work / f"skopeo-{next(runs)}"
                subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet",
                                "--src-tls-verify=false",
                                f"docker://{registry.host}/bench/plain:1", f"dir:{dest}"],
                               check=True, capture_output=True)
                shutil.rmtree(dest)

            def pull(name: str) -> Callable[[], None]:
                def run() -> None:
                    bundle = work / f"bundle-{next(runs)}"
                    result = puller.pull(f"{registry.host}/bench/{name}:1", bundle)
                    assert (result.rootfs / "data/000.bin").read_bytes() == files["data/000.bin"]
                    shutil.rmtree(bundle)
                return run

            pull("plain")()  # warm up: the setup resources, the connection pool
            figures = {
                "floor_s": timed(floor, args.rounds),
                "skopeo_s": timed(skopeo, args.rounds),
                "pull_s": timed(pull("plain"), args.rounds),
                "pull_encrypted_s": timed(pull("enc"), args.rounds),
            }
    result: dict[str, float | int] = {"image_mib": round(size_mib), "rounds": args.rounds}
    for name, seconds in figures.items():
        label = name.removesuffix("_s")
        result[f"{label}_mib_s"] = round(size_mib / seconds, 1)
        print(f"{label:16} {seconds * 1000:9.1f} ms  {size_mib / seconds:8.1f} MiB/s")
    result["pull_over_skopeo"] = round(figures["pull_s"] / figures["skopeo_s"], 2)
    result["pull_over_floor"] = round(figures["pull_s"] / figures["floor_s"], 2)
    result["encrypted_over_plain"] = round(figures["pull_encrypted_s"] / figures["pull_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
