# Sluice gateway image. Multi-stage: the build stage installs every dependency
# and type-checks; the runtime stage has production dependencies only and runs
# as a non-root user. Set DATABASE_URL (the buffer) and mount or bake a config.
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Before npm ci: its "prepare" builds the web console from them into dist/console.
COPY scripts ./scripts
COPY src ./src
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
RUN npx tsc -p tsconfig.build.json --noEmit

FROM node:22-slim AS runtime
ENV NODE_ENV=production \
    SLUICE_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
# tsx runs the TypeScript sources (a production dependency), so no build output
# needs to match the sources; embedded-postgres is never started in the image
# because DATABASE_URL is required there.
# No scripts: the project's "prepare" (the console) was run in the build stage;
# esbuild's own install check is run by name (tsx uses it at run time).
RUN npm ci --omit=dev --no-fund --no-audit --ignore-scripts && npm rebuild esbuild && npm cache clean --force
COPY --from=build /app/src ./src
# The web console, built in the build stage (served at / and /console).
COPY --from=build /app/dist/console ./dist/console
COPY bin ./bin
COPY migrations ./migrations
COPY config ./config
RUN useradd --system --uid 10001 --home-dir /app sluice && chown -R sluice /app
USER sluice
EXPOSE 7376
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.SLUICE_HTTP_PORT||7376)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/sluice.js"]
CMD ["start"]
