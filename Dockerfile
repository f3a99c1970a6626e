# latch in a minimal image; the demo backend in its own target.
#   docker build -t latch .                                   latch (the default, last target)
#   docker run latch -service web                             latch is the entrypoint
#   docker build --target demo-backend -t latch-demo-backend .
# Stamped with the checkout's version and commit (what `make up` passes, and
# `latch -version` and the start-up log print):
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" -t latch .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The build context has no .git (.dockerignore), so the version comes in as
# build arguments: docker-compose.yml passes LATCH_VERSION and
# LATCH_REVISION, which `make up` sets from git. Without them the binaries
# say "unstamped".
ARG VERSION=unstamped
ARG REVISION=
# BuildKit keeps Go's module and build caches between builds: a rebuild
# after a change compiles what changed, not every dependency again (another
# version only links again).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -o /out/ \
	-ldflags "-s -w -X github.com/latchgw/latch/cmd/internal/buildinfo.Version=${VERSION} -X github.com/latchgw/latch/cmd/internal/buildinfo.Revision=${REVISION}" \
	./cmd/latch ./cmd/demo-backend && \
	mkdir -p /out/state

# The demo backend (docker compose's web-N): not in latch's image.
FROM gcr.io/distroless/static-debian12:nonroot AS demo-backend
ARG VERSION=unstamped
ARG REVISION=
LABEL org.opencontainers.image.version="${VERSION}" org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/demo-backend /
USER nonroot:nonroot
EXPOSE 8081
ENTRYPOINT ["/demo-backend"]

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot; no shell.
# /var/lib/latch belongs to nonroot, so a volume there can hold the cookie
# secret latch creates (LATCH_COOKIE_SECRET_FILE). The admin API listens on
# 127.0.0.1:9090 inside the container unless LATCH_ADMIN_LISTEN says otherwise
# (docker-compose.yml: 0.0.0.0:9090, published on the host's loopback only),
# so only the public port is exposed.
FROM gcr.io/distroless/static-debian12:nonroot AS latch
ARG VERSION=unstamped
ARG REVISION=
LABEL org.opencontainers.image.version="${VERSION}" org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/latch /
COPY --from=build --chown=65532:65532 /out/state /var/lib/latch
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/latch"]
