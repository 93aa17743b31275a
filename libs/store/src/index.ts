export * from "./batch-writer.js";
export * from "./deadline.js";
export * from "./migrate.js";
export * from "./pool.js";
export * from "./storable.js";
