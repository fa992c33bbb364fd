# tend's release image: two static binaries in an otherwise empty image, to
# copy into yours, side by side (tend finds its unit helper beside itself,
# and without it starts its own binary as the helper, slower):
#     COPY --from=tend /tend /tend-unit-helper /sbin/
#     ENTRYPOINT ["/sbin/tend", "--"]
# Build it with the version and the commit (the build stage has no git):
#     docker build --build-arg VERSION=0.1.0 \
#         --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t tend .

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a change of the sources reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG COMMIT=""
# CGO_ENABLED=0: a static binary that runs in any image, scratch included.
# -buildvcs=false: .git is not in the build context (.dockerignore); the
# commit comes from the COMMIT build argument instead.
# urfave_cli_no_docs leaves out urfave/cli's man-page generator (DESIGN.md §7).
RUN set -eu; \
    ldflags="-s -w"; \
    if [ -n "$VERSION" ]; then ldflags="$ldflags -X main.version=$VERSION"; fi; \
    if [ -n "$COMMIT" ]; then ldflags="$ldflags -X main.commit=$COMMIT"; fi; \
    CGO_ENABLED=0 go build -buildvcs=false -trimpath -tags urfave_cli_no_docs \
        -ldflags "$ldflags" -o /tend . ; \
    CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" \
        -o /tend-unit-helper ./unit/helper/cmd/tend-unit-helper ; \
    /tend --version

FROM scratch
COPY --from=build /tend /tend-unit-helper /
ENTRYPOINT ["/tend"]
