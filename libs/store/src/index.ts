export * from "./migrate.js";
export * from "./pool.js";
