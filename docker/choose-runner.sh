#!/bin/sh
# RUNNER=auto for the Makefile: prints "docker" when a Docker engine with the nvidia runtime
# answers `docker info`, else "local" followed by why, so make can say why it runs locally.
# Only fixed phrases are printed (make echoes them inside single quotes).
if ! command -v docker >/dev/null 2>&1; then
    echo "local no docker command on PATH"
    exit 0
fi
if ! runtimes=$(docker info --format '{{json .Runtimes}}' 2>&1); then
    case "$runtimes" in
        *"permission denied"*)
            echo "local docker info was refused (permission denied on the Docker socket): add your user to the" \
                 "docker group and log in again, or set RUNNER=docker to use compose anyway" ;;
        *)
            echo "local no Docker engine answered docker info (is the daemon running?)" ;;
    esac
    exit 0
fi
case "$runtimes" in
    *nvidia*) echo "docker" ;;
    *) echo "local the Docker engine has no nvidia runtime (install the NVIDIA Container Toolkit)" ;;
esac
