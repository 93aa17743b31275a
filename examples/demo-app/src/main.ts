// The loan demo's process. With the SDK (the default) it joins the platform before it serves
// (startSdk: token, terminal, registration, socket, metadata, resources report), takes its terms
// from business parameters and its database from the technical parameter `db.main`, and passes
// every request through the SDK's governance gate. `--without-sdk` runs the same handlers on
// local configuration alone: the bench's baseline.
//
//   PORT=8090 OPSPLANE_CONFIG_URL=http://127.0.0.1:8083 OPSPLANE_APP_ID=loan-demo \
//     OPSPLANE_APP_SECRET=… OPSPLANE_ENV=dev node examples/demo-app/dist/main.js
import { gracefulShutdown, optionsFromEnv, type Sdk, type SdkLogger, startSdk } from "@opsplane/sdk";
import pino from "pino";
import { buildApp, loanInterfaces } from "./app.js";
import { type LoanBook, MemoryLoanBook } from "./loan-book.js";
import { type BankCodes, bankCodesKey, defaultBankCodes, defaultRateTable, LoanTerms, type RateTable, rateTableKey } from "./loan-terms.js";
import { databaseSettings, PgLoanBook } from "./pg-loan-book.js";

const withoutSdk = process.argv.includes("--without-sdk");
const port = Number(process.env.PORT ?? 8090);
const host = process.env.HOST ?? "127.0.0.1";
/** SIGTERM drains within this bound (a shutdown command brings its own, graceMs). */
const shutdownTimeoutMs = Number(process.env.SHUTDOWN_TIMEOUT_MS ?? 10_000);
/** Local configuration of `db.main`: below config-center's, and what a degraded start or a run without the SDK uses. */
const localDatabase = process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : undefined;

const logger = pino({ level: process.env.LOG_LEVEL ?? "info", base: { app: "loan-demo" } });
const sdkLog: SdkLogger = {
  debug: (msg, fields) => logger.debug({ sdk: true, ...fields }, msg),
  info: (msg, fields) => logger.info({ sdk: true, ...fields }, msg),
  warn: (msg, fields) => logger.warn({ sdk: true, ...fields }, msg),
  error: (msg, fields) => logger.error({ sdk: true, ...fields }, msg),
};
const say = (line: string) => logger.info(line);

let book: LoanBook = new MemoryLoanBook();
let terms = new LoanTerms(defaultRateTable, defaultBankCodes);

async function openBook(value: unknown): Promise<LoanBook> {
  return value === undefined ? new MemoryLoanBook() : PgLoanBook.open(databaseSettings(value), say);
}

/** Book switches run one after another, in the order the values came. */
let switching: Promise<unknown> = Promise.resolve();

/**
 * Opens the book `db.main` now names, then closes the previous one once its queries end. Throws
 * (the previous book keeps serving) when the new database cannot be used.
 */
function switchBook(value: unknown): Promise<LoanBook> {
  const run = switching.then(async () => {
    const next = await openBook(value);
    const previous = book;
    book = next;
    await previous.close();
    return next;
  });
  switching = run.catch(() => undefined);
  return run;
}

/** The terms from the business parameters this instance has (its bundled defaults for any it has none of). */
function termsFrom(sdk: Sdk): LoanTerms {
  return new LoanTerms(
    (sdk.business.get(rateTableKey) as RateTable | undefined) ?? defaultRateTable,
    (sdk.business.get(bankCodesKey) as BankCodes | undefined) ?? defaultBankCodes,
  );
}

/** The version config-center files the reported interfaces (and their OpenAPI) under, unless OPSPLANE_APP_VERSION says otherwise. */
const packageVersion: string = (require("../package.json") as { version: string }).version;

async function joinPlatform(shutdown: (why: string, graceMs?: number) => void): Promise<Sdk> {
  const options = optionsFromEnv({ ...process.env, OPSPLANE_SERVICE_PORT: String(port) });
  const sdk = await startSdk({
    ...options,
    appVersion: options.appVersion ?? packageVersion,
    localConfig: localDatabase ? { "db.main": localDatabase } : {},
    log: sdkLog,
    resources: {
      interfaces: loanInterfaces.map((i) => ({
        code: i.code,
        method: i.method,
        path: i.path,
        handler: i.handler,
        description: i.description,
        // config-center shows it as the request body's schema; a query has only its path's id.
        params: i.schema.body ?? i.schema.params,
      })),
    },
    onShutdown: ({ graceMs, requestedBy }) => shutdown(`shutdown command from ${requestedBy || "the terminal"}`, graceMs),
  });
  say(`joined the platform (${sdk.state})`);
  // Rebuild hook: a new `db.main` (another database, a rotated password) moves the book. Registered
  // before the first read, so a change pushed meanwhile is not missed.
  sdk.config.onChange("db.main", async (value) => {
    if (value === undefined) return say("db.main removed: the loan book stays where it is");
    say(`loan book now in ${(await switchBook(value)).description} (db.main changed)`);
  });
  await switchBook(sdk.config.get("db.main"));
  // Re-initialisation of the pricing module when either business parameter changes.
  terms = termsFrom(sdk);
  for (const key of [rateTableKey, bankCodesKey]) {
    sdk.business.onChange(key, () => {
      terms = termsFrom(sdk);
      say(`loan terms rebuilt (${key} changed)`);
    });
  }
  // A dial test runs this: it reads the app's own state, so a stuck book or lost terms fail it.
  sdk.dialCheck("loan-book", async () => ({ book: book.description, loans: await book.count(), rateTiers: terms.rateTable.tiers.length }));
  sdk.pool({
    name: "db.main",
    kind: "connection",
    read: () =>
      book instanceof PgLoanBook
        ? { used: book.pool.totalCount - book.pool.idleCount, max: book.pool.options.max ?? 10, waiting: book.pool.waitingCount }
        : { used: 0, max: 0 },
  });
  return sdk;
}

async function main(): Promise<void> {
  let sdk: Sdk | undefined;
  let closing = false;
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  /**
   * Stops accepting, lets the requests in flight finish (connections still busy after `graceMs`
   * are cut; a keep-alive connection closes as soon as its request is answered), then closes the
   * SDK (config-center sees the instance offline) and the book, exits 0.
   */
  const shutdown = (why: string, graceMs = shutdownTimeoutMs) => {
    if (closing) return;
    closing = true;
    say(`shutting down (${why})`);
    void gracefulShutdown({
      servers: () => (app ? [app.server] : []),
      close: async () => {
        await sdk?.close();
        await book.close();
        say("stopped");
      },
      log: sdkLog,
    })(graceMs);
  };
  process.on("SIGTERM", () => shutdown("SIGTERM")).on("SIGINT", () => shutdown("SIGINT"));

  if (withoutSdk) await switchBook(localDatabase);
  else sdk = await joinPlatform(shutdown);
  app = await buildApp({ book: () => book, terms: () => terms, edge: sdk?.fastify(), loggerInstance: logger });
  await app.listen({ port, host });
  say(`loan demo on http://${host}:${port} (${sdk ? `SDK ${sdk.state}` : "without the SDK"}, loans in ${book.description})`);
}

main().catch((err: Error) => {
  logger.fatal(`loan demo did not start: ${err.message}`);
  process.exit(1);
});
