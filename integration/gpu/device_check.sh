#!/usr/bin/env bash
# One-shot GPU discovery check for a real NVIDIA host: probe, plan with `gpu`, engine support.
# Run from the repo root; writes its log and JSON into $OUT (or /tmp/gpu-check).
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
py=${PYTHON:-python3}
{
  echo "== host"; uname -a; id; $py --version
  echo "== nodes"; ls -l /dev/nvidia* /dev/dri 2>&1; ls /dev/nvidia-caps 2>&1
  echo "== driver"; cat /proc/driver/nvidia/version 2>&1
  echo "== nvidia-smi"; nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv 2>&1
  echo "== sysfs drm"; ls -l /sys/class/drm 2>&1; echo "udev db: $(ls /run/udev/data 2>/dev/null | wc -l) entries"
  echo "== engines"; for t in docker dockerd podman nvidia-container-cli nvidia-ctk; do printf '%s: %s\n' "$t" "$(command -v $t || echo missing)"; done
  ls /etc/cdi /var/run/cdi 2>&1
  echo "== sandbox probe"; time $py -m sandbox probe
  $py -m sandbox probe --json > "$out/probe.json"; echo "probe exit $?"
  echo "== sandbox plan (game with gpu)"; $py -m sandbox plan policies/examples/game.toml
  $py -m sandbox plan policies/examples/game.toml --json > "$out/plan.json"; echo "plan exit $?"
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "== engine answers: nvidia-smi in a container"; docker info 2>&1 | grep -i -E 'runtime|cdi'
    image=sandbox-gpu-check/smi:$$
    if integration/gpu/smi_image.sh "$image"; then
      echo "== sandbox plan of $image"; $py -m sandbox plan "$image" 2>&1
      echo "== sandbox run --yes $image (nvidia-smi -L with the gpu grant)"
      $py -m sandbox run --yes "$image" > "$out/run.txt" 2>&1
      code=$?
      cat "$out/run.txt"; echo "run exit $code"
      if [[ $code -eq 0 ]] && grep -q '^GPU [0-9]' "$out/run.txt"; then
        echo "RESULT: the gpu-granted container sees the GPU(s) above"
      else
        echo "RESULT: the gpu-granted container did not list a GPU (see the plan and run output)"
      fi
      docker rmi "$image" >/dev/null 2>&1
    else
      echo "== could not build the nvidia-smi image (no nvidia-smi on the host?)"
    fi
  else
    echo "== no container engine answers on this host: the container half of the check cannot run"
  fi
} 2>&1 | tee "$out/log.txt"
