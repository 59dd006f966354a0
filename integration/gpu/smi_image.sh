#!/usr/bin/env bash
# Builds IMAGE from the host's nvidia-smi, its ldd libraries and NVML, labelled with a manifest
# that asks for `gpu` and runs `nvidia-smi -L`: `sandbox run --yes IMAGE` then lists the GPUs
# from inside a gpu-granted container. No registry needed (FROM scratch).
#
# Usage: smi_image.sh IMAGE [ENGINE-CLI]   (ENGINE-CLI: docker (default) or podman)
# NVIDIA_SMI=PATH builds from another binary (the unit check uses a stand-in where no GPU is).
# Exit 3 when there is no nvidia-smi to copy.
set -euo pipefail
image=${1:?usage: smi_image.sh IMAGE [ENGINE-CLI]}
engine=${2:-docker}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}

smi=${NVIDIA_SMI:-$(command -v nvidia-smi || true)}
if [[ -z $smi || ! -x $smi ]]; then
    echo "smi_image: no nvidia-smi on this host" >&2
    exit 3
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/tmp" "$root/etc"

copy() {  # host path [path in the image]: the file a link points to, under the link's name
    local dest=$root${2:-$1}
    mkdir -p "$(dirname "$dest")"
    cp -L "$1" "$dest"
}

libs_of() {  # the absolute paths ldd names (the loader included)
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
}

copy "$smi" /usr/bin/nvidia-smi
declare -A libs=()
while read -r lib; do libs[$lib]=1; done < <(libs_of "$smi")
# nvidia-smi dlopens NVML, so ldd does not list it; where the engine injects the driver (CDI or
# the NVIDIA runtime) its copy wins, this one only makes the image self-contained.
while read -r lib; do
    libs[$lib]=1
    while read -r dep; do libs[$dep]=1; done < <(libs_of "$lib")
done < <(ldconfig -p 2>/dev/null | awk '$1 ~ /^libnvidia-ml\.so/ {print $NF}')
for lib in "${!libs[@]}"; do copy "$lib"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' \
    >"$root/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\nrender:x:105:\nnogroup:x:65534:\n' >"$root/etc/group"

cat >"$ctx/sandbox.toml" <<'TOML'
manifest-version = 1
[app]
id = "org.sandbox.GpuCheck"
name = "GPU check"
version = "1.0.0"
command = ["/usr/bin/nvidia-smi", "-L"]
[capabilities]
gpu = true
network = false
TOML
{
    printf 'FROM scratch\nCOPY rootfs/ /\n'
    PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$repo" "$py" -m sandbox manifest labels --dockerfile \
        "$ctx/sandbox.toml"
} >"$ctx/Dockerfile"
"$engine" build -q -t "$image" "$ctx" >/dev/null
echo "$image"
