# syntax=docker/dockerfile:1
# One image recipe for all six services; SERVICE picks the one, PORT the port it exposes.
# Build from the repository root (the context holds the whole npm workspace), e.g.
#   docker build --build-arg SERVICE=config-center --build-arg PORT=8083 -t opsplane/config-center .
ARG SERVICE
ARG PORT

FROM node:24-bookworm-slim AS build
ARG SERVICE
RUN test -n "$SERVICE" || { echo "--build-arg SERVICE=<service> is required" >&2; exit 1; }
WORKDIR /app
COPY . .
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
# tsc -b builds the service and exactly the libs its tsconfig references; nothing else gets a dist/.
# A service's own build script adds what tsc does not (assist-relay's browser bundles).
RUN npx tsc -b "services/$SERVICE" && npm run build -w "services/$SERVICE" --if-present
# The runtime tree: every workspace manifest (npm ci checks them against the lockfile), the built
# libs with their migrations, and the service without its sources, tests and browser sources.
RUN set -eu; \
    mkdir -p /out; \
    cp package.json package-lock.json /out/; \
    for m in libs/*/package.json services/*/package.json examples/*/package.json; do \
      if [ -f "$m" ]; then cp --parents "$m" /out/; fi; \
    done; \
    for lib in libs/*/; do \
      for part in dist migrations; do \
        if [ -d "$lib$part" ]; then cp -r --parents "$lib$part" /out/; fi; \
      done; \
    done; \
    cp -r "services/$SERVICE" /out/services/; \
    cd "/out/services/$SERVICE"; \
    rm -rf src test web tsconfig.json build-web.mjs dist/.tsbuildinfo /out/libs/*/dist/.tsbuildinfo
# Production dependencies of this one workspace and the libs it links, nothing of the others.
RUN --mount=type=cache,target=/root/.npm \
    cd /out && npm ci --omit=dev --workspace "services/$SERVICE" --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ARG SERVICE
ARG PORT
ENV NODE_ENV=production SERVICE=${SERVICE}
WORKDIR /app
# Owned by root and read-only to the service: it writes nothing but /tmp.
COPY --from=build /out/ ./
# The image's `node` user, given by number so the kubelet can check runAsNonRoot.
USER 1000:1000
EXPOSE ${PORT}
# exec: node becomes PID 1 and receives SIGTERM directly, for the graceful shutdown.
CMD ["sh", "-c", "exec node services/$SERVICE/dist/main.js"]
