import { type App, AppError } from "@opsplane/platform";

/**
 * A 413 names the limit that applied, as the variable that sets it and its value: the dictionary
 * import's own (IMPORT_BODY_LIMIT_BYTES), BODY_LIMIT_BYTES everywhere else, Connect RPCs included
 * (their ImportDictionary too). Installed before the routes, it covers every route registered after.
 */
export function nameBodyLimits(app: App, limits: { body: number; import: number }, importPath: string): void {
  app.addHook("onRoute", (route) => {
    if (route.errorHandler) return;
    const [variable, limit] = route.url === importPath ? ["IMPORT_BODY_LIMIT_BYTES", limits.import] : ["BODY_LIMIT_BYTES", limits.body];
    route.errorHandler = (err) => {
      const tooLarge = (err as { code?: string }).code === "FST_ERR_CTP_BODY_TOO_LARGE" || (err instanceof AppError && err.status === 413);
      // Thrown on to the kit's error handler, which answers in the platform's error model (or Connect's).
      throw tooLarge ? new AppError(413, "payload_too_large", `request body exceeds ${limit} bytes (${variable})`) : err;
    };
  });
}
