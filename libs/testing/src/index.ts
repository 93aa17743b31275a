export * from "./chromium.js";
export * from "./database.js";
export * from "./deps.js";
export * from "./embedded-postgres.js";
export * from "./free-port.js";
export * from "./poll.js";
export * from "./process-usage.js";
