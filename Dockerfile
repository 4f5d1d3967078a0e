# syntax=docker/dockerfile:1
# session-manager: a release build in one stage, a small non-root runtime in the next.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
# The workspace's other member (the benchmark): cargo needs its manifest to load the
# workspace, and builds none of it here.
COPY bench/driver/Cargo.toml ./bench/driver/
RUN mkdir -p src personas \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY personas ./personas
# The operator's page, embedded in the binary as the personas are.
COPY ui ./ui
# Make cargo see the real sources as newer than the stub build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /data/sessions /data/personas

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="session-manager" \
      org.opencontainers.image.description="Owns the sessions of a multi-session Claude Code Telegram bot and serves its persona library over HTTP/JSON" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /src/target/release/session-manager /usr/local/bin/session-manager
COPY --from=build --chown=65532:65532 /data /data
# Inside the container the service listens on all interfaces, so a token is required:
# mount it as the secret below (see compose.yaml), or set SESSION_MANAGER_TOKEN.
# The token file variable holds a path, not a secret.
# hadolint ignore=DL3064
ENV SESSION_MANAGER_LISTEN=0.0.0.0:8765 \
    SESSION_MANAGER_SESSIONS_DIR=/data/sessions \
    SESSION_MANAGER_PERSONAS_DIR=/data/personas \
    SESSION_MANAGER_TOKEN_FILE=/run/secrets/session_manager_token \
    RUST_LOG=info
VOLUME ["/data/sessions", "/data/personas"]
EXPOSE 8765
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/session-manager", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/session-manager"]
CMD ["serve"]
