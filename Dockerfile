# latch and its demo backend in one minimal image.
#   docker build -t latch .
#   docker run latch -service web            (latch is the entrypoint)
#   docker run --entrypoint /demo-backend latch -id web-1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/latch ./cmd/demo-backend

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latch /out/demo-backend /
USER nonroot:nonroot
EXPOSE 8080 9090
ENTRYPOINT ["/latch"]
