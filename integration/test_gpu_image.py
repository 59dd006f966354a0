"""The GPU check's image: built FROM scratch out of a host binary and its libraries, it runs
through `sandbox run --yes` with the gpu manifest (the real nvidia-smi: device_check.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR = ROOT / "integration" / "gpu"


def _sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=300, check=False, env=env
    )


@pytest.mark.parametrize("script", ["device_check.sh", "smi_image.sh"])
def test_gpu_scripts_parse(script: str) -> None:
    done = _sh("bash", "-n", str(GPU_DIR / script))
    assert done.returncode == 0, done.stderr


def _build_and_run(image: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    built = _sh(str(GPU_DIR / "smi_image.sh"), image, env=env)
    assert built.returncode == 0, built.stderr
    labels = json.loads(_sh("docker", "image", "inspect", image).stdout)[0]["Config"]["Labels"]
    manifest = json.loads(labels["org.sandbox-apps.manifest"])
    assert manifest["capabilities"]["gpu"] is True
    assert manifest["app"]["command"] == ["/usr/bin/nvidia-smi", "-L"]
    return _sh("sandbox", "run", "--yes", image, env=env)


def test_image_from_a_stand_in_binary_runs_its_command(docker_client_url: str) -> None:
    """The building half without a GPU: /bin/echo as nvidia-smi prints the manifest's `-L`."""
    image = f"sandbox-test/smi-standin-{os.getpid()}:1"
    env = dict(os.environ, DOCKER_HOST=docker_client_url, NVIDIA_SMI="/bin/echo")
    try:
        ran = _build_and_run(image, env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.strip() == "-L"
    finally:
        _sh("docker", "rmi", image)


# The same image with the host's real nvidia-smi is run by integration/gpu/device_check.sh on a
# host that has an NVIDIA GPU and an engine; CI machines have neither, and a test that can only
# skip here would prove nothing.
