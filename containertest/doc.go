//go:build linux

// Package containertest drives a real Docker daemon to test tend where it is
// used: as docker-init (`docker run --init` with the daemon's --init-path), as
// an image's ENTRYPOINT under `docker stop` and `docker kill`, and the release
// Dockerfile itself. It needs no registry: the test images are FROM scratch
// with a host-built static tend and Debian's busybox-static, and the
// Dockerfile's golang:1.26-bookworm stage is a local image made by
// debootstrap and the host's /usr/local/go. It also runs the Python client's
// tests (examples/python) against a tend it starts.
//
// The tests start their own dockerd (a dedicated socket, --data-root under
// TEND_CT_CACHE, default /var/cache/tend-containertest, where images stay
// cached by tag between runs) and install docker.io, busybox-static and
// debootstrap with apt-get when they are missing. They need root: without it
// they skip, except under CI=true, where a missing or failing daemon is a
// failure. TEND_CT_SKIP=1 skips them outside CI.
package containertest
