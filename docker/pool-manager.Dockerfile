# The pool manager: built from this repository's source, deployed on Railway as today.
#   docker build -f docker/pool-manager.Dockerfile -t pool-manager .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package pool-manager \
    && cp target/release/pool-manager /pool-manager

# Small runtime: no shell tools needed. TLS roots are compiled into the binary (webpki-roots);
# CA certificates are installed for anything else that needs them.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* curl=7.88.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home pool
COPY --from=build /pool-manager /usr/local/bin/pool-manager
USER 10001
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/pool-manager"]
