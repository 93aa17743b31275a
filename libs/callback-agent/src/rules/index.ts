export * from "./body-decoding.js";
export * from "./compile.js";
export * from "./dot-path.js";
export * from "./extractors.js";
export * from "./headers.js";
export * from "./pattern.js";
export * from "./types.js";
